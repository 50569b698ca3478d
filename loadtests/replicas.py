"""Several gateway replicas on real parts, one killed under load.

``python -m loadtests.replicas`` starts, each as its own process on loopback:

* the fake upstream (``loadtests.replicas_upstream``; every answer takes ``--upstream-ms``);
* ``--replicas`` gateways (``loadtests.replicas_gateway``: the real app and server code of
  ``sdm-router serve``, with ``NoopVerifier``), their decision store in PostgreSQL (a fresh
  schema of ``--postgres``, dropped afterwards) and, when this build has per-key limits
  (``limits.redis_url``, ``auth.keys``), their counters in Redis (``--redis``);
* nginx (the Debian package) in front, generated config in a temporary prefix: round robin,
  ``max_fails=1 fail_timeout=30s``, ``proxy_next_upstream error timeout`` (a refused connection
  is retried on the next replica; a POST already sent is never sent twice).

A closed loop of ``--concurrency`` clients sends chat requests through nginx for ``--seconds``;
after ``--kill-after`` seconds the first replica gets SIGKILL. The report gives requests/s,
p50/p99 and errors before and after the kill, which replica answered the 5xx (nginx's
``$upstream_addr``), what the survivors served, whether every answered request reached the
decision store, and whether a per-key rpm limit holds across replicas (counted in Redis).
``--out`` writes it with the command line on top (earlier runs are kept below).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import getpass
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtests.overhead import percentile

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
LOAD_KEY, TIGHT_KEY = "sk-replicas-load", "sk-replicas-tight"
TIGHT_RPM = 6
QUESTION = [{"role": "user", "content": "What is six times seven?"}]
# nginx access log: one tab-separated line per request
LOG_FORMAT = "$http_x_request_id\\t$status\\t$upstream_addr\\t$upstream_status\\t$request_time"


# ---------------------------------------------------------------- processes


def logs_key(line: str, key_name: str) -> bool:
    """Whether a JSON log line is a request line naming ``key_name`` (however it is spaced)."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return (
        isinstance(record, dict)
        and record.get("message") == "request finished"
        and record.get("key_name") == key_name
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Child:
    """A process this harness started, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        """Its base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    def tail(self, characters: int = 3000) -> str:
        """The end of its log."""
        try:
            return self.log.read_text(errors="replace")[-characters:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM it if it still runs (nginx's master then stops its workers; a gateway
        drains), SIGKILL after 15 s. This process started it: the pid is its own child's."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


def start(name: str, command: Sequence[str], folder: Path, port: int, **env: str) -> Child:
    """Start ``command`` in the repository root, stdout and stderr to ``folder/name.log``."""
    log = folder / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    return Child(name, process, log, port)


def wait_until_ready(child: Child, path: str = "/readyz", seconds: float = 180.0) -> None:
    """Poll ``path`` until it answers 200; fails with the child's log when it dies or stalls."""
    deadline = time.monotonic() + seconds
    while True:
        if child.process.poll() is not None:
            raise RuntimeError(
                f"{child.name} exited with {child.process.returncode}:\n{child.tail()}"
            )
        try:
            if httpx.get(f"{child.url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} not ready within {seconds:g} s:\n{child.tail()}")
        time.sleep(0.1)


def start_upstream(folder: Path) -> Child:
    """The delayed fake upstream under uvicorn."""
    port = free_port()
    child = start(
        "upstream",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "loadtests.replicas_upstream:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        folder,
        port,
    )
    wait_until_ready(child, "/stats", 60)
    return child


def start_gateway(name: str, config: Path, folder: Path, **env: str) -> Child:
    """One replica (``loadtests.replicas_gateway``) on a free port."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "loadtests.replicas_gateway",
        "--config",
        str(config),
        "--port",
        str(port),
    ]
    return start(name, command, folder, port, **env)


# ---------------------------------------------------------------- configuration


def limits_supported() -> str | None:
    """None when this build has per-key rpm limits counted in Redis, else why not."""
    from sdm_router.config import Settings

    fields = Settings.model_fields
    if "limits" not in fields or "auth" not in fields:
        return "this build has no auth/limits settings (auth.keys, limits.redis_url)"
    limits = fields["limits"].annotation
    if "redis_url" not in getattr(limits, "model_fields", {}):
        return "this build's limits settings have no redis_url"
    return None


def digest(key: str) -> str:
    """The SHA-256 hex of a key, as ``auth.keys[].sha256`` takes it."""
    return hashlib.sha256(key.encode()).hexdigest()


def gateway_config(
    upstream_url: str,
    *,
    upstream_model: str,
    storage: dict[str, Any],
    redis_prefix: str | None = None,
    redis_url: str = REDIS_URL,
    server: dict[str, Any] | None = None,
    extra_routes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A gateway config: route ``auto`` is one tier on the upstream model ``upstream_model``;
    ``extra_routes`` maps more route names to upstream models; with ``redis_prefix``, two keys
    (one unlimited, one at ``TIGHT_RPM``) counted in Redis."""
    models = {"auto": upstream_model, **(extra_routes or {})}
    backends = {
        f"upstream-{name}": {
            "type": "openai",
            "base_url": f"{upstream_url}/v1",
            "model": model,
            "timeouts": {"connect": 2, "read": 120, "total": 180},
        }
        for name, model in models.items()
    }
    config: dict[str, Any] = {
        "server": {
            "max_concurrency": 256,
            "drain_delay_seconds": 1.0,
            "graceful_shutdown_seconds": 5,
            **(server or {}),
        },
        "backends": backends,
        "verifier": {"artifact": "/nonexistent/noop.sdmkitmodel", "encoder_model": "/nonexistent"},
        "routes": {name: {"tiers": [{"backend": f"upstream-{name}"}]} for name in models},
        "storage": storage,
        "observability": {"json_logs": True},
    }
    if redis_prefix is not None:
        config["auth"] = {
            "keys": [
                {"name": "load", "sha256": digest(LOAD_KEY)},
                {"name": "tight", "sha256": digest(TIGHT_KEY), "limits": {"rpm": TIGHT_RPM}},
            ],
            "public_paths": ["/healthz", "/readyz", "/metrics"],
        }
        config["limits"] = {"redis_url": redis_url, "key_prefix": redis_prefix}
    return config


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh schema of the database at ``url``, migrated for the decision store (once, so
    the replicas do not race to create it), dropped afterwards; yields the URL that uses it."""
    from sqlalchemy import create_engine, text

    from sdm_router.storage.database import make_engine, migrate

    schema = f"replicas_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f"create schema {schema}"))
    scoped = f"{url}?options=-csearch_path%3D{schema}"
    engine = make_engine(scoped)
    try:
        migrate(engine)
        engine.dispose()
        yield scoped
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()


def stored_request_ids(url: str) -> set[str]:
    """The request ids in the decision store at ``url``."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {row[0] for row in connection.execute(text("select request_id from decisions"))}
    finally:
        engine.dispose()


def postgres_problem(url: str) -> str | None:
    """None when PostgreSQL answers at ``url``, else why not."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except OperationalError as error:
        return f"no PostgreSQL at {url} ({type(error.orig).__name__})"
    finally:
        engine.dispose()
    return None


def redis_problem(url: str) -> str | None:
    """None when Redis answers PING at ``url``, else why not."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        return f"no Redis at {url} ({type(error).__name__})"
    finally:
        client.close()
    return None


def nginx_binary() -> str | None:
    """The nginx executable (Debian puts it in /usr/sbin)."""
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(path).exists()),
        None,
    )


def nginx_config(prefix: Path, port: int, replica_ports: Sequence[int]) -> str:
    """nginx.conf for a non-daemon nginx whose every path lies under ``prefix``, with the edge
    limits of ``deploy/nginx/limits.conf``."""
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in replica_ports
    )
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include {ROOT}/deploy/nginx/limits.conf;
    log_format replicas "{LOG_FORMAT}";
    access_log {prefix}/access.log replicas;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream gateways {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_connect_timeout 1s;
            proxy_read_timeout 120s;
            # a refused connection (a replica gone) is retried on the next one; a request the
            # replica already received is not sent again (POST is not idempotent)
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


def start_nginx(folder: Path, replica_ports: Sequence[int]) -> Child:
    """nginx in front of the replicas, as a child process (``daemon off``)."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    prefix = folder / "nginx"
    prefix.mkdir()
    port = free_port()
    (prefix / "nginx.conf").write_text(nginx_config(prefix, port, replica_ports))
    child = start(
        "nginx",
        [
            binary,
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            str(prefix / "error.log"),
        ],
        folder,
        port,
    )
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return child
        if child.process.poll() is not None or time.monotonic() > deadline:
            error_log = (
                (prefix / "error.log").read_text() if (prefix / "error.log").exists() else ""
            )
            raise RuntimeError(f"nginx did not start:\n{child.tail()}\n{error_log}")
        time.sleep(0.05)


def nginx_log(folder: Path) -> dict[str, tuple[int, str]]:
    """nginx's access log: request id -> (status, the upstream address(es) it tried)."""
    path = folder / "nginx" / "access.log"
    entries: dict[str, tuple[int, str]] = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0] not in ("", "-"):
            entries[parts[0]] = (int(parts[1]), parts[2])
    return entries


# ---------------------------------------------------------------- load


@dataclass
class Sample:
    """One request of the load."""

    request_id: str
    start: float  # seconds since the load began
    end: float
    status: int  # 0: no HTTP response (connection error)
    error: str = ""
    stored_as: str = ""  # the gateway's x-request-id: what its decision store keys it by

    @property
    def ok(self) -> bool:
        """A complete 200 answer."""
        return self.status == 200 and not self.error


@dataclass
class Kill:
    """The replica killed during the load, and when."""

    name: str
    port: int
    at: float = -1.0  # SIGKILL sent (seconds since the load began)
    dead: float = -1.0  # the process is gone (a loaded machine takes a while to tear it down)
    in_flight: int = 0  # client requests in flight through nginx when SIGKILL was sent


async def load(
    url: str,
    seconds: float,
    concurrency: int,
    headers: dict[str, str],
    kill: Kill | None = None,
    victim: Child | None = None,
) -> list[Sample]:
    """A closed loop of ``concurrency`` clients on ``url`` for ``seconds``; SIGKILLs ``victim``
    at ``kill.at`` (seconds after the start; recorded with the requests in flight, and when
    the process was gone)."""
    samples: list[Sample] = []
    active: set[str] = set()
    began = time.monotonic()
    body = {"model": "auto", "messages": QUESTION, "max_tokens": 16}

    async def client(number: int, http: httpx.AsyncClient) -> None:
        while (now := time.monotonic() - began) < seconds:
            request_id = f"replicas-{number}-{uuid.uuid4().hex[:12]}"
            active.add(request_id)
            status, error, stored_as = 0, "", ""
            try:
                reply = await http.post(
                    f"{url}/v1/chat/completions",
                    json=body,
                    headers={**headers, "x-request-id": request_id},
                )
                status = reply.status_code
                stored_as = reply.headers.get("x-request-id", "")
                if status == 200 and not reply.json().get("choices"):
                    error = "no choices"
            except httpx.HTTPError as failure:
                error = type(failure).__name__
            finally:
                active.discard(request_id)
            samples.append(
                Sample(request_id, now, time.monotonic() - began, status, error, stored_as)
            )

    async def killer() -> None:
        if kill is None or victim is None:
            return
        await asyncio.sleep(max(0.0, kill.at - (time.monotonic() - began)))
        kill.in_flight = len(active)
        victim.process.send_signal(signal.SIGKILL)
        kill.at = time.monotonic() - began
        await asyncio.to_thread(victim.process.wait)
        kill.dead = time.monotonic() - began

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(killer(), *(client(n, http) for n in range(concurrency)))
    return samples


# ---------------------------------------------------------------- report


@dataclass
class Phase:
    """Requests that started in one time window."""

    name: str
    samples: list[Sample]
    seconds: float

    @property
    def ok(self) -> list[Sample]:
        """The successful ones."""
        return [s for s in self.samples if s.ok]

    def errors(self) -> Counter[str]:
        """Failures by kind: the status, or the connection error."""
        return Counter(
            str(s.status) if s.status and s.status != 200 else s.error or "?"
            for s in self.samples
            if not s.ok
        )

    def row(self) -> str:
        """One line of the table."""
        latencies = [(s.end - s.start) * 1000 for s in self.ok]
        errors = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.errors().items())) or "0"
        rps = len(self.ok) / self.seconds if self.seconds > 0 else float("nan")
        return (
            f"{self.name:<12} {len(self.samples):>8} {len(self.ok):>6} {rps:>8.1f} "
            f"{percentile(latencies, 50):>8.1f} {percentile(latencies, 99):>8.1f}  {errors}"
        )


@dataclass
class Report:
    """What a run measured and checked."""

    lines: list[str] = field(default_factory=list)
    before: Phase | None = None
    after: Phase | None = None
    kill: Kill | None = None
    server_errors: list[Sample] = field(default_factory=list)  # 5xx and connection errors
    server_errors_from_victim: int = 0
    late_server_errors: list[Sample] = field(default_factory=list)  # started after the kill
    victim_in_flight: set[str] = field(default_factory=set)  # its requests alive at the kill
    survivors_after_kill: dict[str, int] = field(default_factory=dict)
    survivors_unstored: set[str] = field(default_factory=set)
    victim_stored: tuple[int, int] = (0, 0)
    limits_skipped: str | None = None
    tight_statuses: list[int] = field(default_factory=list)
    key_name_logged: bool = False

    def text(self) -> str:
        """The report as printed and saved."""
        return "\n".join(self.lines) + "\n"


def analyse(
    samples: list[Sample],
    kill: Kill,
    seconds: float,
    nginx: dict[str, tuple[int, str]],
    survivors: Sequence[Child],
    settle: float,
) -> Report:
    """Split the load at the kill and check the failures against nginx's log."""
    report = Report(kill=kill)
    report.before = Phase("before kill", [s for s in samples if s.start < kill.at], kill.at)
    report.after = Phase(
        "after kill", [s for s in samples if s.start >= kill.at], seconds - kill.at
    )
    victim = f"127.0.0.1:{kill.port}"
    report.server_errors = [s for s in samples if s.status >= 500 or s.status == 0]
    report.server_errors_from_victim = sum(
        1
        for s in report.server_errors
        if nginx.get(s.request_id, (0, ""))[1].split(",")[-1].strip() == victim
    )
    report.late_server_errors = [s for s in report.server_errors if s.start > kill.dead + settle]
    report.victim_in_flight = {
        s.request_id
        for s in samples
        if s.start <= kill.dead + settle
        and s.end >= kill.at
        and nginx.get(s.request_id, (0, ""))[1].split(",")[-1].strip() == victim
    }
    for child in survivors:
        address = f"127.0.0.1:{child.port}"
        report.survivors_after_kill[child.name] = sum(
            1
            for s in report.after.ok
            if nginx.get(s.request_id, (0, ""))[1].split(",")[-1].strip() == address
        )
    return report


# ---------------------------------------------------------------- the run


@dataclass
class Options:
    """What ``run`` does (the command-line flags)."""

    replicas: int = 3
    seconds: float = 20.0
    kill_after: float = 8.0
    concurrency: int = 8
    upstream_ms: int = 50
    postgres: str = POSTGRES_URL
    redis: str = REDIS_URL
    settle: float = 0.1  # once it is gone, nginx notices its closed keep-alive connections


def run(options: Options, folder: Path) -> Report:
    """Start everything in ``folder``, run the load, kill a replica, check, stop everything."""
    for problem in (postgres_problem(options.postgres),):
        if problem:
            raise RuntimeError(problem)
    skipped = limits_supported() or redis_problem(options.redis)
    children: list[Child] = []
    try:
        with postgres_schema(options.postgres) as storage_url:
            upstream = start_upstream(folder)
            children.append(upstream)
            prefix = None if skipped else f"sdm-replicas-{uuid.uuid4().hex[:8]}"
            config = gateway_config(
                upstream.url,
                upstream_model=f"delay-{options.upstream_ms}",
                storage={"url": storage_url, "flush_interval_ms": 100},
                redis_prefix=prefix,
                redis_url=options.redis,
            )
            config_path = folder / "gateway.yaml"
            config_path.write_text(yaml.safe_dump(config))
            gateways = [
                start_gateway(f"replica-{i + 1}", config_path, folder)
                for i in range(options.replicas)
            ]
            children += gateways
            for gateway in gateways:
                wait_until_ready(gateway)
            nginx = start_nginx(folder, [g.port for g in gateways])
            children.append(nginx)
            headers = {} if skipped else {"authorization": f"Bearer {LOAD_KEY}"}
            victim, survivors = gateways[0], gateways[1:]
            kill = Kill(victim.name, victim.port, at=options.kill_after)
            samples = asyncio.run(
                load(nginx.url, options.seconds, options.concurrency, headers, kill, victim)
            )
            time.sleep(0.5)  # nginx writes its access log line after the response
            report = analyse(
                samples, kill, options.seconds, nginx_log(folder), survivors, options.settle
            )
            report.limits_skipped = skipped
            if not skipped:
                report.tight_statuses = tight_key_statuses(nginx.url)
            # drain the survivors (SIGTERM): their decision stores flush on the way out
            for child in survivors:
                child.process.send_signal(signal.SIGTERM)
            for child in survivors:
                child.process.wait(timeout=60)
            # the store keys records by the gateway's ids: map them back to the client's
            by_gateway_id = {s.stored_as: s.request_id for s in samples if s.stored_as}
            stored = {by_gateway_id.get(rid, rid) for rid in stored_request_ids(storage_url)}
            served = nginx_log(folder)
            ok = {s.request_id for s in samples if s.ok}
            by = {rid: served.get(rid, (0, ""))[1].split(",")[-1].strip() for rid in ok}
            survivor_addresses = {f"127.0.0.1:{c.port}" for c in survivors}
            report.survivors_unstored = {r for r in ok if by[r] in survivor_addresses} - stored
            victim_ok = {r for r in ok if by[r] == f"127.0.0.1:{victim.port}"}
            report.victim_stored = (len(victim_ok & stored), len(victim_ok))
            report.key_name_logged = skipped is None and any(
                logs_key(line, "load") for c in survivors for line in c.tail(200_000).splitlines()
            )
            describe(report, options, nginx_binary() or "nginx", storage_url)
            return report
    finally:
        for child in reversed(children):
            child.stop()


def tight_key_statuses(url: str) -> list[int]:
    """Statuses of 2 x ``TIGHT_RPM`` requests with the rpm-limited key, spread by nginx over
    the surviving replicas (avoiding a minute boundary, in case the window is fixed)."""
    second = datetime.datetime.now().second
    if second > 50:
        time.sleep(61 - second)
    headers = {"authorization": f"Bearer {TIGHT_KEY}"}
    body = {"model": "auto", "messages": QUESTION, "max_tokens": 16}
    with httpx.Client(timeout=30) as client:
        return [
            client.post(f"{url}/v1/chat/completions", json=body, headers=headers).status_code
            for _ in range(2 * TIGHT_RPM)
        ]


def describe(report: Report, options: Options, nginx: str, storage_url: str) -> None:
    """Fill ``report.lines``."""
    assert report.before and report.after and report.kill
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    schema = storage_url.rsplit("%3D", 1)[-1]
    kill = report.kill
    lines = [
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}, load avg {load_average:.1f}",
        f"{options.replicas} replicas (loadtests.replicas_gateway: build_app + the serve code, "
        f"NoopVerifier) behind {version.stderr.strip().removeprefix('nginx version: ')} "
        f"(round robin, max_fails=1, proxy_next_upstream error timeout); upstream answers in "
        f"{options.upstream_ms} ms; {options.concurrency} closed-loop clients for "
        f"{options.seconds:g} s",
        f"decision store: PostgreSQL schema {schema}; limits: "
        + (
            f"skipped ({report.limits_skipped})"
            if report.limits_skipped
            else f"Redis, key rpm {TIGHT_RPM}"
        ),
        "",
        f"{'phase':<12} {'requests':>8} {'ok':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  errors",
        report.before.row(),
        report.after.row(),
        "",
        f"{kill.name} SIGKILLed at t={kill.at:.2f} s (gone at {kill.dead:.2f} s) with "
        f"{kill.in_flight} client requests in "
        f"flight through nginx (all replicas); 5xx or connection errors: "
        f"{len(report.server_errors)}, {report.server_errors_from_victim} of them answered "
        f"for the killed replica (nginx $upstream_addr), which had "
        f"{len(report.victim_in_flight)} requests in flight from SIGKILL to gone; started "
        f"later than "
        f"{options.settle:g} s after it was gone: {len(report.late_server_errors)}",
        "survivors' answers after the kill: "
        + ", ".join(f"{name} {n}" for name, n in report.survivors_after_kill.items()),
        f"decision store: survivors' answered requests missing: {len(report.survivors_unstored)}"
        f"; killed replica's stored: {report.victim_stored[0]}/{report.victim_stored[1]} "
        f"(its queue dies with it)",
    ]
    if report.tight_statuses:
        counts = Counter(report.tight_statuses)
        lines.append(
            f"limits: {len(report.tight_statuses)} requests with the rpm-{TIGHT_RPM} key over "
            f"{options.replicas - 1} replicas: "
            + ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
            + " (shared in Redis)"
        )
        lines.append(f"key name on the survivors' request lines: {report.key_name_logged}")
    report.lines = lines


def save(report: Report, command: str, path: Path) -> None:
    """Write the report under its command line; earlier runs stay below."""
    earlier = path.read_text() if path.exists() else ""
    block = f"$ {command}\n{report.text()}"
    if earlier:
        block += "\n# ---- earlier run ----\n" + earlier
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block)


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, Path | None]:
    """The options and the output file."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.replicas",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = Options()
    parser.add_argument("--replicas", type=int, default=defaults.replicas)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--kill-after", type=float, default=defaults.kill_after)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--upstream-ms", type=int, default=defaults.upstream_ms)
    parser.add_argument("--postgres", default=defaults.postgres)
    parser.add_argument("--redis", default=defaults.redis)
    parser.add_argument(
        "--out", type=Path, default=None, help="e.g. loadtests/results/replicas.txt"
    )
    args = parser.parse_args(argv)
    if args.replicas < 2:
        parser.error("--replicas must be at least 2 (one is killed)")
    if not 0 < args.kill_after < args.seconds:
        parser.error("--kill-after must lie inside the run")
    options = Options(
        args.replicas,
        args.seconds,
        args.kill_after,
        args.concurrency,
        args.upstream_ms,
        args.postgres,
        args.redis,
    )
    return options, args.out


def main(argv: Sequence[str] | None = None) -> int:
    """Run once, print the report, optionally save it."""
    options, out = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sdm-replicas-") as folder:
        report = run(options, Path(folder))
    print(report.text(), end="")
    if out is not None:
        arguments = sys.argv[1:] if argv is None else list(argv)
        save(report, shlex.join(["python", "-m", "loadtests.replicas", *arguments]), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
