"""Hostile-input probes against a real gateway: what a client with a key, or without one, can
do to it with bodies, headers, slow or endless connections, admin reloads and odd framing.

``python -m loadtests.hostile_probes`` copies the embedded configuration (SmolLM2-135M in
process, the shipped verifier artifact, copied into a temporary folder that is the artifact
root) and starts ``sdm-router serve`` from this checkout with three keys: ``alpha`` (a user
key with limits), ``beta`` (a user key with limits, held to the route ``auto``) and ``ops``
(an admin key). ``--source DIR`` starts it from another checkout instead (``git worktree add
--detach /tmp/base main``), so one run of this script gives the table before a change and one
after it. Each probe prints one row: what it sent, what came back, and whether that is what a
hardened gateway does. The last rows count the 5xx answers of the whole run, the tracebacks
the gateway logged and whether it still serves.

``--env NAME=VALUE`` passes a setting to the gateway (one the checkout knows); ``--watch``
(``--body-watch`` for an unfinished body) is how long a probe waits for the server to close a
connection that never finishes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtests import hostile_connections as conn
from loadtests.replicas import digest, free_port

ROOT = Path(__file__).resolve().parents[1]
ALPHA, BETA, OPS = "sk-probe-alpha", "sk-probe-beta", "sk-probe-ops"
SURROGATE = "hi \ud800 there"
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}


@dataclass
class Row:
    """One probe's result."""

    group: str
    probe: str
    outcome: str
    passed: bool


@dataclass
class Run:
    """A gateway under probe: its URL, pid and log, and every status it answered."""

    url: str
    pid: int
    log: Path
    statuses: list[int] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)

    def post(self, path: str, body: Any, key: str | None = ALPHA, **kw: Any) -> httpx.Response:
        """POST ``body`` (JSON, encoded as Python does: lone surrogates as escapes)."""
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        reply = httpx.post(f"{self.url}{path}", content=data, headers=headers, timeout=120, **kw)
        self.statuses.append(reply.status_code)
        return reply

    def get(self, path: str, key: str | None = ALPHA) -> httpx.Response:
        """GET ``path``."""
        headers = {"authorization": f"Bearer {key}"} if key else {}
        reply = httpx.get(f"{self.url}{path}", headers=headers, timeout=60)
        self.statuses.append(reply.status_code)
        return reply

    def raw(self, request: bytes) -> conn.Held:
        """``request`` over a raw socket; its answer (status counted)."""
        held = conn.Held(None, conn.raw_exchange(self.address, request))
        if held.status is not None:
            self.statuses.append(held.status)
        return held

    def add(self, group: str, probe: str, outcome: str, passed: bool) -> None:
        """Record and print one row."""
        self.rows.append(Row(group, probe, outcome, passed))
        print(f"{'pass' if passed else 'FAIL'}  {group:<11} {probe:<52} {outcome}", flush=True)


def code_of(reply: httpx.Response) -> Any:
    """The envelope's ``code`` (or the body's first bytes)."""
    try:
        return reply.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return reply.text[:40]


def status_row(run: Run, group: str, probe: str, reply: httpx.Response, want: int) -> None:
    """A row passing when ``reply`` has status ``want``."""
    run.add(group, probe, f"{reply.status_code} {code_of(reply)}", reply.status_code == want)


# ---------------------------------------------------------------- probes


def text_probes(run: Run) -> None:
    """Lone surrogates in every kind of text a key can send."""
    message = [{"role": "user", "content": SURROGATE}]
    cases: list[tuple[str, str, Any]] = [
        ("chat content (\\ud800 escape)", "/v1/chat/completions", {**CHAT, "messages": message}),
        ("chat, streamed", "/v1/chat/completions", {**CHAT, "messages": message, "stream": True}),
        ("chat content part", "/v1/chat/completions", {**CHAT, "messages": [
            {"role": "user", "content": [{"type": "text", "text": SURROGATE}]}]}),
        ("completions prompt", "/v1/completions",
         {"model": "auto", "prompt": SURROGATE, "max_tokens": 8}),
        ("verify response", "/v1/verify",
         {"model": "auto", "prompt": "Say hi.", "response": SURROGATE}),
        ("tool schema key", "/v1/chat/completions", {**CHAT, "tools": [{"type": "function",
         "function": {"name": "f", "parameters": {"\ud800": 1}}}]}),
        ("embeddings input", "/v1/embeddings", {"model": "auto", "input": SURROGATE}),
        ("feedback note", "/v1/feedback",
         {"request_id": "req-x", "label": "correct", "note": SURROGATE}),
    ]  # fmt: skip
    for probe, path, body in cases:
        status_row(run, "text", probe, run.post(path, body), 400)
    raw = json.dumps({**CHAT, "messages": message}).replace("\\ud800", "\ud800")
    reply = run.post("/v1/chat/completions", raw.encode("utf-8", "surrogatepass"))
    status_row(run, "text", "chat content (UTF-8 bytes of a surrogate)", reply, 400)
    reply = run.post("/admin/verifier/reload", {"artifact": "/tmp/\ud800"}, key=OPS)
    status_row(run, "text", "admin reload path", reply, 400)


def head_probes(run: Run) -> None:
    """Heads too large, too many headers, a header that never ends."""
    big = b"GET /healthz HTTP/1.1\r\nHost: p\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    held = run.raw(big + b"")
    run.add("edge", "100 KB header", f"{held.status}", held.status == 431)
    many = b"".join(b"X-H%d: 1\r\n" % i for i in range(5000))
    held = run.raw(b"GET /healthz HTTP/1.1\r\nHost: p\r\n" + many + b"\r\n")
    run.add("edge", "5,000 headers", f"{held.status}", held.status == 431)
    sent, held = conn.endless_header(run.address, 64 * 2**20)
    if held.status is not None:
        run.statuses.append(held.status)
    run.add(
        "edge",
        "64 MiB header line, never ended",
        f"{held.status} after {sent / 2**20:.2f} MiB sent",
        held.status == 431 and sent < 64 * 2**20,
    )


def slow_probes(run: Run, watch: float, body_watch: float) -> None:
    """Connections that never finish: each should be closed within ``watch`` seconds (a body
    within ``body_watch``)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: p\r\n"
    body = b"POST /v1/verify HTTP/1.1\r\nHost: p\r\nContent-Length: 100\r\n\r\n{"
    cases = [
        ("idle connection", b"", b"", watch),
        ("half a head", head, b"", watch),
        ("one byte of head every 2 s", head, b"X", watch),
        ("a CRLF every 2 s, never a request", b"", b"\r\n", watch),
        ("half a body (after a 401)", body, b"", body_watch),
    ]
    results = conn.at_once(
        [partial(conn.hold, run.address, opening, wait, trickle, 2.0)
         for _, opening, trickle, wait in cases]
    )  # fmt: skip
    for (probe, _, _, _), held in zip(cases, results, strict=True):
        after = "open" if held.seconds is None else f"closed after {held.seconds:.1f} s"
        run.add("edge", probe, f"{after} ({held.status})", held.seconds is not None)


def crowd_probes(run: Run, watch: float) -> None:
    """50 slow connections while normal clients are served; memory after 100 hostile ones."""
    head = b"GET /healthz HTTP/1.1\r\nHost: p\r\n"
    latencies: list[float] = []
    with conn.open_connections(run.address, 50, head) as slow:
        started = time.monotonic()
        while time.monotonic() - started < watch:
            begun = time.monotonic()
            served = run.get("/healthz", key=None).status_code == 200
            latencies.append(time.monotonic() - begun if served else 99.0)
            time.sleep(0.5)
        left = conn.still_open(slow)
    worst = max(latencies)
    run.add(
        "edge",
        "50 slow connections + a client meanwhile",
        f"{left}/50 open after {watch:g} s; client served, slowest {worst * 1000:.0f} ms",
        left == 0 and worst < 1.0,
    )
    before = conn.rss_bytes(run.pid)
    with conn.open_connections(run.address, 100, head, most=2 * 2**20) as hostile:
        time.sleep(1.0)
        grown = conn.rss_bytes(run.pid) - before
        held = conn.still_open(hostile)
    run.add(
        "edge",
        "100 connections, 2 MiB unfinished header each",
        f"RSS +{grown / 2**20:.1f} MB, {held}/100 still open",
        grown < 50 * 2**20,
    )


def cap_probe(run: Run, count: int) -> None:
    """Many idle connections at once: those past a cap are closed as they are accepted."""
    with conn.open_connections(run.address, count) as crowd:
        time.sleep(1.0)
        open_now = conn.still_open(crowd)
    served = 0
    for _ in range(50):  # once their closes have reached the server
        with contextlib.suppress(httpx.TransportError):
            served = run.get("/healthz", key=None).status_code
            break
        time.sleep(0.1)
    run.add(
        "edge",
        f"{count} idle connections at once",
        f"{open_now} kept, {count - open_now} closed at once; then /healthz {served}",
        open_now < count and served == 200,
    )


def reload_probes(run: Run, roots: Path) -> None:
    """Admin reloads of broken artifacts and of paths outside the artifact roots."""
    bad_utf8, deep = roots / "bad-utf8.sdmkitmodel", roots / "deep.sdmkitmodel"
    for folder in (bad_utf8, deep):
        folder.mkdir(exist_ok=True)
    (bad_utf8 / "manifest.json").write_bytes(b'{"schemaVersion": "\xff\xfe"}')
    (deep / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with contextlib.suppress(FileExistsError):
        (roots / "shadow.sdmkitmodel").symlink_to("/etc/shadow")
        (roots / "nowhere.sdmkitmodel").symlink_to("/nonexistent/nowhere")
    cases = [
        ("manifest with invalid UTF-8", str(bad_utf8)),
        ("manifest nested 100,000 deep", str(deep)),
        ("100 KB path", "/" + "a" * 100_000),
    ]
    for probe, path in cases:
        reply = run.post("/admin/verifier/reload", {"artifact": path}, key=OPS)
        status_row(run, "reload", probe, reply, 400)

    def message(path: str) -> str:
        reply = run.post("/admin/verifier/reload", {"artifact": path}, key=OPS)
        return (
            str(reply.status_code) + " " + str(reply.json()["error"]["message"]).replace(path, "P")
        )

    pairs = [
        ("symlink to /etc/shadow vs to nowhere", "shadow.sdmkitmodel", "nowhere.sdmkitmodel"),
        ("/etc vs /nonexistent", "/etc", "/nonexistent"),
    ]
    for probe, one, other in pairs:
        first, second = message(str(roots / one)), message(str(roots / other))
        same = first == second and first.startswith("400")
        run.add("reload", probe, "same answer" if same else f"{first[:60]!r}", same)


def information_probes(run: Run) -> None:
    """What a key, or no key, learns that it should not."""
    reply = run.post("/v1/chat/completions", {**CHAT, "model": "no-such-model"}, key=BETA)
    names = "smollm2-135m" in reply.text
    run.add("info", "route-only key, unknown model: 404 names", f"{reply.status_code}"
            f"{' a hidden direct model' if names else ' only its routes'}", not names)  # fmt: skip
    ready = run.get("/readyz", key=None).json()
    run.add("info", "/readyz without a key", ", ".join(sorted(ready)), "components" not in ready)
    ready = run.get("/readyz", key=OPS).json()
    run.add("info", "/readyz with the admin key", ", ".join(sorted(ready)), "components" in ready)


def framing_probes(run: Run) -> None:
    """Content-Length spellings, HTTP/1.0 streams, slash redirects, error codes."""
    body = json.dumps(CHAT).encode()
    for spelling, name in ((b" ", "a space"), (b"\t", "a tab")):
        held = run.raw(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer "
            + ALPHA.encode()
            + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + b"Content-Length: %d%s\r\n\r\n" % (len(body), spelling)
            + body
        )
        run.add("framing", f"Content-Length: N and {name}", f"{held.status}", held.status == 200)
    streamed = json.dumps({**CHAT, "stream": True}).encode()
    held = run.raw(
        b"POST /v1/chat/completions HTTP/1.0\r\nAuthorization: Bearer " + ALPHA.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(streamed)
        + streamed
    )  # fmt: skip
    head, _, rest = held.answer.partition(b"\r\n\r\n")
    chunked = b"transfer-encoding: chunked" in head.lower()
    readable = rest.rstrip().endswith(b"data: [DONE]")
    run.add("framing", "HTTP/1.0 stream", f"{held.status}, chunked={chunked}, ends with [DONE]="
            f"{readable}", held.status == 200 and not chunked and readable)  # fmt: skip
    held = run.raw(b"GET /v1/models/ HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer "
                   + ALPHA.encode() + b"\r\nConnection: close\r\n\r\n")  # fmt: skip
    to_evil = b"evil.example" in held.answer.partition(b"\r\n\r\n")[0]
    run.add("framing", "GET /v1/models/ with Host: evil.example",
            f"{held.status}{' redirect to evil.example' if to_evil else ''}",
            not to_evil and held.status == 404)  # fmt: skip
    reply = run.post("/v1/chat/completions", b'{"model": "auto", "messages": [')
    run.add("codes", "unparseable body", f"{reply.status_code} code={code_of(reply)!r}",
            reply.status_code == 400 and isinstance(code_of(reply), str))  # fmt: skip
    reply = run.post("/v1/chat/completions", b"[" * 100_000 + b"]" * 100_000)
    run.add("codes", "body nested 100,000 deep", f"{reply.status_code} code={code_of(reply)!r}",
            reply.status_code == 400 and isinstance(code_of(reply), str))  # fmt: skip
    long = {"model": "auto", "prompt": "word " * 20_000, "max_tokens": 8}
    reply = run.post("/v1/completions", long)
    run.add("codes", "prompt past the context window", f"{reply.status_code} "
            f"code={code_of(reply)!r}", code_of(reply) == "context_length_exceeded")  # fmt: skip


def closing_rows(run: Run) -> None:
    """Still serving; the run's 5xx; tracebacks in the log."""
    reply = run.post("/v1/chat/completions", CHAT)
    status_row(run, "after", "a normal chat request", reply, 200)
    errors = sum(1 for status in run.statuses if status >= 500)
    run.add("after", "5xx answers over the run", f"{errors} of {len(run.statuses)}", errors == 0)
    tracebacks = run.log.read_text(errors="replace").count("Traceback")
    run.add("after", "tracebacks in the gateway log", f"{tracebacks} ({errors} 5xx)",
            tracebacks <= errors)  # fmt: skip


# ---------------------------------------------------------------- the gateway


@contextlib.contextmanager
def gateway(source: Path, folder: Path, settings: dict[str, str]) -> Iterator[Run]:
    """``sdm-router serve`` from ``source`` with the probe keys; the embedded configuration
    with its artifact copied into ``folder/artifacts`` (the artifact root)."""
    config = yaml.safe_load((source / "configs" / "embedded.yaml").read_text())
    artifact = source / "sdm_router" / "artifacts" / "smollm2-135m.sdmkitmodel"
    roots = folder / "artifacts"
    shutil.copytree(artifact, roots / artifact.name)
    config["verifier"]["artifact"] = str(roots / artifact.name)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    limits = {"rpm": 100_000, "tpm": 100_000_000}
    env = {
        **os.environ,
        "PYTHONPATH": str(source),
        "SDM_ROUTER_STATE_DIR": str(folder / "state"),
        "SDM_ROUTER_OBSERVABILITY__JSON_LOGS": "true",
        "SDM_ROUTER_AUTH__KEYS": json.dumps([
            {"name": "alpha", "sha256": digest(ALPHA), "limits": limits},
            {"name": "beta", "sha256": digest(BETA), "routes": ["auto"], "models": [],
             "limits": limits},
        ]),
        "SDM_ROUTER_AUTH__ADMIN_KEYS": json.dumps([{"name": "ops", "sha256": digest(OPS)}]),
        **settings,
    }  # fmt: skip
    log = folder / "gateway.log"
    command = [sys.executable, "-m", "sdm_router.cli", "serve", "--config",
               str(folder / "config.yaml"), "--port", str(port)]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=source, env=env, stdout=sink, stderr=sink)
    run = Run(f"http://127.0.0.1:{port}", process.pid, log)
    try:
        deadline = time.monotonic() + 300
        while not _ready(run):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield run
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
        if process.poll() is None:
            process.kill()


def _ready(run: Run) -> bool:
    try:
        return httpx.get(f"{run.url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def probe_all(run: Run, roots: Path, watch: float, body_watch: float, crowd: int) -> None:
    """Every probe, in order."""
    steps: list[Callable[[], None]] = [
        lambda: text_probes(run),
        lambda: head_probes(run),
        lambda: slow_probes(run, watch, body_watch),
        lambda: crowd_probes(run, watch),
        lambda: cap_probe(run, crowd),
        lambda: reload_probes(run, roots),
        lambda: information_probes(run),
        lambda: framing_probes(run),
        lambda: closing_rows(run),
    ]
    for step in steps:
        step()


def table(run: Run, title: str) -> str:
    """The rows as a Markdown table, with the pass count."""
    lines = [f"### {title}", "", "| group | probe | outcome | result |", "|---|---|---|---|"]
    lines += [
        f"| {r.group} | {r.probe} | {r.outcome} | {'pass' if r.passed else '**FAIL**'} |"
        for r in run.rows
    ]
    passed = sum(r.passed for r in run.rows)
    return "\n".join([*lines, "", f"{passed} of {len(run.rows)} pass", ""])


def main(argv: list[str] | None = None) -> int:
    """Start the gateway, probe it, print the table (and append it to ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout to serve from")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the gateway")
    parser.add_argument("--watch", type=float, default=20.0, help="seconds to wait for a close")
    parser.add_argument(
        "--body-watch", type=float, default=70.0, help="seconds to wait for an unfinished body"
    )
    parser.add_argument("--crowd", type=int, default=1100, help="idle connections at once")
    parser.add_argument("--title", default="", help="the table's heading")
    parser.add_argument("--out", type=Path, help="append the table to this file")
    options = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in options.env)
    source = options.source.resolve()
    git = ["git", "-C", str(source), "rev-parse", "--short", "HEAD"]
    revision = subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="hostile-") as temp:
        folder = Path(temp)
        with gateway(source, folder, settings) as run:
            probe_all(run, folder / "artifacts", options.watch, options.body_watch, options.crowd)
    title = options.title or f"{source.name} at {revision}"
    text = table(run, title)
    print("\n" + text)
    if options.out:
        with options.out.open("a") as sink:
            sink.write(f"$ python -m loadtests.hostile_probes {' '.join(argv or sys.argv[1:])}\n\n")
            sink.write(text + "\n")
    return 0 if all(row.passed for row in run.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
