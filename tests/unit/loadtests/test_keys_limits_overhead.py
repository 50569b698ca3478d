"""``loadtests.keys_limits_overhead``: the keys it configures load and find the bench key."""

from __future__ import annotations

import json

from loadtests.keys_limits_overhead import KEY, auth_env
from sdm_router.api.edge.auth import KeyRing
from sdm_router.config import AuthSettings


def test_the_benchmark_key_is_the_last_of_n_and_limited() -> None:
    auth = AuthSettings(**json.loads(auth_env(10)))
    assert len(auth.keys) == 10
    principal = KeyRing(auth).find(KEY.encode())
    assert principal is not None and principal.name == "bench"
    assert principal.rpm and principal.tpm and principal.in_flight
