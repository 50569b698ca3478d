"""Observe mode on the real embedded SmolLM2: a ``verifier`` section with an encoder and no
``artifact`` starts every route observing; loading the shipped artifact (calibrated on
``local:embedded``) under concurrent load makes the embedded route verify while a route served
by another model (an OpenAI-compatible upstream) keeps observing, and no request fails."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sdm_router.config import EMBEDDED_CONFIG, load_settings
from sdm_router.main import build_app
from sdm_router.storage.database import make_engine
from sdm_router.storage.tables import decisions
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import serve_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHIPPED = (EMBEDDED_CONFIG.parent / "../artifacts/smollm2-135m.sdmkitmodel").resolve()
QUESTION = "What is the capital of France?"


def settings(upstream_url: str, store: Path) -> Any:
    embedded = load_settings()
    backends = {
        "smollm2-135m": embedded.backends["smollm2-135m"].model_dump() | {"max_new_tokens": 24},
        "theirs": {"type": "openai", "base_url": f"{upstream_url}/v1", "model": "good"},
    }
    return load_settings(
        backends=backends,
        verifier={"encoder_backend": "smollm2-135m", "device": "cpu"},  # no artifact
        retrieval=None,
        routes={
            "auto": {"tiers": [{"backend": "smollm2-135m", "temperature": 0, "max_tokens": 16}]},
            "their-route": {"tiers": [{"backend": "theirs"}]},
        },
        storage={"path": str(store), "keep_text": False, "flush_interval_ms": 20},
    )


async def ask(client: httpx.AsyncClient, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": QUESTION}]}
    return await client.post("/v1/chat/completions", json=body)


async def test_no_artifact_observes_then_the_shipped_one_covers_only_its_own_model(
    upstream: tuple[str, FakeUpstream], tmp_path: Path
) -> None:
    store = tmp_path / "decisions.sqlite3"
    with serve_in_thread(build_app(settings(upstream[0], store))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            ready = (await client.get("/readyz")).json()
            assert ready["components"]["verifier"]["artifact_id"] == "none"
            assert {name: state["reason"] for name, state in ready["routes"].items()} == {
                "auto": "no_artifact", "their-route": "no_artifact",
            }  # fmt: skip
            first = await ask(client, "auto")
            assert first.status_code == 200, first.text
            assert first.headers["x-sdm-decision"] == "observed"
            assert "Paris" in first.json()["choices"][0]["message"]["content"]

            # four clients keep asking while the shipped artifact is loaded
            async def client_loop(model: str) -> list[httpx.Response]:
                return [await ask(client, model) for _ in range(3)]

            clients = [asyncio.create_task(client_loop(m)) for m in ("auto", "their-route") * 2]
            reload = await client.post("/admin/verifier/reload", json={"artifact": str(SHIPPED)})
            assert reload.status_code == 200, reload.text
            replies = [reply for batch in await asyncio.gather(*clients) for reply in batch]
            assert [reply.status_code for reply in replies] == [200] * 12
            seen = {reply.headers["x-sdm-decision"] for reply in replies}
            assert seen <= {"observed", "accept", "abstain"}

            ready = (await client.get("/readyz")).json()
            assert ready["routes"]["auto"]["mode"] == "verify"
            assert ready["routes"]["their-route"]["reason"] == "uncalibrated_model"
            verified = (await ask(client, "auto")).json()["verification"]
            assert verified["decision"] in {"accept", "abstain"}
            assert verified["region_alpha"] is not None  # judged by the shipped artifact
            theirs = await ask(client, "their-route")
            assert theirs.json()["verification"]["reason"] == "uncalibrated_model"
    # the observed answers kept their text for labelling (keep_text is off); verified ones not
    engine = make_engine(f"sqlite:///{store}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(decisions.c.decision, decisions.c.answer, decisions.c.answer_model)
            ).all()
    finally:
        engine.dispose()
    observed = [row for row in rows if row.decision == "observed"]
    assert observed and all(row.answer for row in observed)
    assert {row.answer_model for row in observed} == {"local:embedded", "good"}
    assert all(row.answer is None for row in rows if row.decision != "observed")
