"""The README's main command for real: the console script serves the embedded default."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.openai_extra import extra_fields
from tests.support.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STARTUP_SECONDS = 600  # a fresh machine dequantizes the GGUF once (~25 s on 2 cores)
STATE: list[Path] = []  # the served gateway's state folder (its decision store)
ARTIFACTS: list[Path] = []  # its verifier.artifact_roots (admin reloads name artifacts there)


def _console_script() -> str:
    script = Path(sys.executable).parent / "sdm-router"
    if script.exists():
        return str(script)
    found = shutil.which("sdm-router")
    if found is None:
        pytest.fail("the sdm-router console script is not installed (pip install -e .)")
    return found


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("e2e") / "server.log"
    state = tmp_path_factory.mktemp("state")
    STATE[:] = [state]
    ARTIFACTS[:] = [tmp_path_factory.mktemp("artifacts")]
    env = {
        **os.environ,
        "SDM_ROUTER_SERVER__GRACEFUL_SHUTDOWN_SECONDS": "5",
        "SDM_ROUTER_STATE_DIR": str(state),
        # where POST /admin/verifier/reload may name an artifact
        "SDM_ROUTER_VERIFIER__ARTIFACT_ROOTS": json.dumps([str(ARTIFACTS[0])]),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [_console_script(), "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"the gateway exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"not ready within {STARTUP_SECONDS} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    yield url, process, log_path
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def test_ready_reports_devices(served: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    ready = httpx.get(f"{served[0]}/readyz").json()
    assert ready["status"] == "ready"
    assert ready["components"]["backend:smollm2-135m"]["device"] in {"cpu", "cuda:0"}
    assert ready["components"]["verifier"]["artifact_id"]


def test_a_question_gets_a_verified_answer(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    url = served[0]
    with openai.OpenAI(
        base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300
    ) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}]
        )
    completion = raw.parse()
    verification = extra_fields(completion)["verification"]
    assert verification["decision"] in {"accept", "abstain"}
    assert verification["attempts"], "the cascade recorded no attempt"
    assert raw.headers["x-sdm-decision"] == verification["decision"]
    if verification["decision"] == "accept":
        assert "paris" in (completion.choices[0].message.content or "").lower()
    metrics = httpx.get(f"{url}/metrics").text
    assert "sdm_router_requests_total{" in metrics
    assert 'sdm_router_verifier_info{artifact_id="' in metrics
    served_ids.append(raw.headers["x-request-id"])


served_ids: list[str] = []  # requests answered by the served gateway, in order


def test_sighup_reloads_the_configured_artifact(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    url, process, log_path = served
    before = httpx.get(f"{url}/readyz").json()["components"]["verifier"]["artifact_id"]
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while "SIGHUP: verifier artifact" not in log_path.read_text():
        assert time.monotonic() < deadline, log_path.read_text()[-2000:]
        time.sleep(0.2)
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200 and process.poll() is None
    assert ready.json()["components"]["verifier"]["artifact_id"] == before  # the same file


OWN_QUESTIONS = (
    ("What is the capital of France?", "paris"),
    ("What is the capital of Japan?", "tokyo"),
    ("What is the capital of Italy?", "rome"),
    ("What is 2 + 3?", "5"),
    ("What is the chemical symbol for gold?", "au"),
    ("What is the capital of Germany?", "berlin"),
)


def test_own_verifier_from_labelled_traffic_then_reload(
    served: tuple[str, subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    """The issue's walkthrough on the embedded default: six questions, their decisions read
    back, four labelled through /v1/feedback, ``data import --from-store``, ``verifier update``,
    ``POST /admin/verifier/reload``; /readyz and later decisions name the new artifact."""
    from concurrent.futures import ThreadPoolExecutor

    import sdm_router

    url = served[0]

    def ask(question: str) -> str:
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": question}]},
            timeout=300,
        )
        assert reply.status_code == 200, reply.text
        return reply.headers["x-request-id"]

    with ThreadPoolExecutor(6) as pool:
        answered = list(pool.map(ask, [question for question, _ in OWN_QUESTIONS]))
    parent = httpx.get(f"{url}/readyz").json()["components"]["verifier"]["artifact_id"]
    records = [httpx.get(f"{url}/v1/decisions/{rid}", timeout=30).json() for rid in answered]
    for request_id, record in zip(answered, records, strict=True):
        assert record["request_id"] == request_id and record["artifact_id"] == parent
    # label the answer the verifier judged (kept: the embedded config keeps text), served or not
    for record, (_, expected) in list(zip(records, OWN_QUESTIONS, strict=True))[:4]:
        request_id = record["request_id"]
        label = "correct" if expected in record["answer"].lower() else "incorrect"
        reply = httpx.post(
            f"{url}/v1/feedback", json={"request_id": request_id, "label": label}, timeout=30
        )
        assert reply.status_code == 200, reply.text
    env = {**os.environ, "SDM_ROUTER_STATE_DIR": str(STATE[0]), "HF_HUB_OFFLINE": "1"}
    rows, updated = tmp_path / "rows", ARTIFACTS[0] / "updated.sdmkitmodel"
    imported = subprocess.run(
        [_console_script(), "data", "import", "--from-store", "--output", str(rows)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert "wrote 4 rows" in imported.stdout
    shipped = Path(sdm_router.__file__).parent / "artifacts" / "smollm2-135m.sdmkitmodel"
    update = subprocess.run(
        [_console_script(), "verifier", "update", "--verifier", str(shipped),
         "--data", str(rows), "--out", str(updated)],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    print(update.stdout)
    assert update.returncode == 0, update.stdout + update.stderr
    new_id = json.loads((updated / "manifest.json").read_text())["modelID"]
    assert new_id != parent
    reloaded = httpx.post(
        f"{url}/admin/verifier/reload", json={"artifact": str(updated)}, timeout=120
    )
    assert reloaded.status_code == 200, reloaded.text
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["components"]["verifier"]["artifact_id"] == new_id
    later = ask("What is the capital of Spain?")
    record = httpx.get(f"{url}/v1/decisions/{later}", timeout=30).json()
    assert record["artifact_id"] == new_id
    served_ids.append(later)


def test_sigterm_drains_and_exits(served: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    process = served[1]
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    log = served[2].read_text()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
    # the decision store was flushed on the way out: the answered request is on disk
    database = STATE[0] / "decisions.sqlite3"
    with sqlite3.connect(database) as connection:
        stored = {row[0] for row in connection.execute("select request_id from decisions")}
    assert served_ids and set(served_ids) <= stored, (served_ids, stored)
