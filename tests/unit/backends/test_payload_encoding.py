"""The outbound body encoder falls back to the standard library where orjson refuses."""

import json

from sdm_router.backends.openai_http import encode_payload


def test_integers_beyond_64_bits_are_encoded_not_a_500() -> None:
    payload = {"seed": 2**70, "tools": [{"parameters": {"maximum": -(2**80)}}], "model": "m"}
    assert json.loads(encode_payload(payload)) == payload


def test_ordinary_payloads_round_trip() -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "é"}], "temperature": 0.5}
    assert json.loads(encode_payload(payload)) == payload
