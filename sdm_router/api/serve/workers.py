"""``sdm-router serve --workers N``: N gateway processes that share one port, evenly.

Each worker binds its own listening socket to the same address with ``SO_REUSEPORT`` (Linux):
the kernel then hashes every new connection onto one of the listening sockets, so connections
spread evenly over the workers whatever their load, instead of going to whichever process
wins the race for ``accept()`` on one shared socket (under uvicorn's own supervisor one
worker took about 99% of the CPU in a measured run). A worker only starts listening after its
app's lifespan startup, so no connection waits on a worker that is still loading.

Every worker runs its own ``GatewayServer`` (``server.py`` beside this module), so the SIGTERM
drain (readiness 503, drain delay, graceful shutdown, lifespan shutdown) happens in each one. The
supervisor (the process ``serve`` was started as) only starts the workers, forwards SIGTERM
and SIGINT to them, replaces a worker that dies (a crashed worker's live metric files are
removed first) and exits when all of them have: status 0 when every worker exited with 0.

Workers are started with the ``spawn`` method: a fresh interpreter that builds its own app (no
model, thread or event loop is inherited from the supervisor) and sees the supervisor's
environment, ``PROMETHEUS_MULTIPROC_DIR`` included (``sdm_router.observability.metrics``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType

from fastapi import FastAPI

from sdm_router.api.serve.server import gateway_server
from sdm_router.config import ServerSettings
from sdm_router.core.errors import ConfigurationError
from sdm_router.observability.metrics import (
    clear_multiprocess_dir,
    mark_process_dead,
    multiprocess_dir,
)

logger = logging.getLogger(__name__)

# A worker killed by a signal (not ours) is replaced, unless it had run for less than this:
# then it is crash-looping and the supervisor stops. One that exits by itself (a status: its
# startup failed, the port was taken) stops the supervisor at once.
MIN_WORKER_LIFETIME_SECONDS = 10.0

WorkerTarget = Callable[..., None]
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def reuse_port_supported() -> bool:
    """Whether this platform balances connections over ``SO_REUSEPORT`` sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, not yet listening (uvicorn
    listens on it after the app's startup)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def exit_with_parent(interval: float = 1.0) -> None:
    """In a worker: SIGTERM itself (a drain) if the supervisor disappears (SIGKILLed), so no
    worker keeps serving orphaned."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        logger.warning("the supervisor (pid %d) is gone: draining", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@dataclass
class _Worker:
    number: int
    process: BaseProcess
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Starts ``count`` processes running ``target(*args)``, forwards SIGTERM/SIGINT to them
    and waits for them (``run``)."""

    def __init__(self, target: WorkerTarget, args: Sequence[object], count: int) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self._target = target
        self._args = tuple(args)
        self._count = count
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._stopping = False
        self._failed = False

    @property
    def pids(self) -> list[int]:
        """The pids of the workers started and not yet reaped."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def _start(self, number: int) -> _Worker:
        process = self._context.Process(
            target=self._target, args=self._args, name=f"sdm-router-worker-{number}"
        )
        process.start()
        logger.info("worker %d started (pid %s)", number, process.pid)
        return _Worker(number, process)

    def _launch(self, number: int) -> None:
        """Start worker ``number`` and add it to the live ones; a signal that arrived while it
        was starting (``_forward`` could not see it yet) is passed on to it at once."""
        worker = self._start(number)
        self._workers.append(worker)
        if self._stopping and worker.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid, signal.SIGTERM)

    def _forward(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler: pass the signal on to every live worker."""
        self._stopping = True
        for worker in list(self._workers):
            if worker.process.is_alive() and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, sig)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the workers as ``sig`` to the supervisor would."""
        self._forward(sig, None)

    def _reap(self, worker: _Worker) -> None:
        process = worker.process
        process.join()
        code, pid = process.exitcode, process.pid
        if pid is not None:
            mark_process_dead(pid)  # a clean exit did it already; a crash did not
        if self._stopping:
            logger.info("worker %d (pid %s) exited with %s", worker.number, pid, code)
            if code != 0:
                self._failed = True
            return
        lived = time.monotonic() - worker.started
        if (code is not None and code >= 0) or lived < MIN_WORKER_LIFETIME_SECONDS:
            # Exited by itself (startup failure, bad config), or crash-looping: stop.
            logger.error(
                "worker %d (pid %s) exited with %s after %.1f s: stopping the other workers",
                worker.number, pid, code, lived,
            )  # fmt: skip
            self._failed = True
            self.stop()
            return
        # Killed (the OOM killer, a segfault): its share of the port needs a process.
        logger.error("worker %d (pid %s) died with %s: replacing it", worker.number, pid, code)
        self._launch(worker.number)

    def run(self) -> int:
        """Start the workers, wait until all have exited; 0 if every one exited cleanly after a
        forwarded signal, 1 otherwise."""
        previous = {
            sig: signal.signal(sig, self._forward) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for number in range(self._count):
                if self._stopping:
                    break
                self._launch(number)
            while self._workers:
                sentinels = [w.process.sentinel for w in self._workers]
                ready = multiprocessing.connection.wait(sentinels, timeout=0.5)
                for worker in [w for w in self._workers if w.process.sentinel in ready]:
                    self._workers.remove(worker)
                    self._reap(worker)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self._failed else 0


AppFactory = Callable[[], "tuple[FastAPI, ServerSettings]"]


def serve_worker(factory: AppFactory, host: str, port: int) -> None:
    """One worker (the spawned process's target): bind the shared port, build the app
    (``factory``: a picklable callable, e.g. a ``functools.partial`` of a module function),
    serve it with the draining ``GatewayServer`` until SIGTERM or SIGINT."""
    sock = reuse_port_socket(host, port)  # fails at once if the port is taken
    app, settings = factory()
    exit_with_parent()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT once it has stopped
        gateway_server(app, host, port, settings).run(sockets=[sock])
    # The lifespan shutdown has closed and flushed everything (decision store, metrics):
    # skip the interpreter's teardown of the loaded libraries, which took about 6 s.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def serve_workers(factory: AppFactory, host: str, port: int, count: int) -> int:
    """``count`` workers on ``host:port`` behind a ``Supervisor``; returns its exit status.

    Metrics: ``PROMETHEUS_MULTIPROC_DIR`` when set (created if missing, emptied of a previous
    run's files before any worker starts), otherwise a private temporary directory that is
    removed at exit, so ``/metrics`` always aggregates every worker.
    """
    if not reuse_port_supported():
        raise ConfigurationError("--workers > 1 needs SO_REUSEPORT (Linux)")
    created = None
    directory = multiprocess_dir()
    if directory is not None:
        os.makedirs(directory, exist_ok=True)
        clear_multiprocess_dir(directory)
    else:
        created = tempfile.mkdtemp(prefix="sdm-router-metrics-")
        os.environ[MULTIPROC_ENV] = created  # the spawned workers inherit it
    logger.info("serving on %s:%d with %d workers (SO_REUSEPORT)", host, port, count)
    try:
        return Supervisor(serve_worker, (factory, host, port), count).run()
    finally:
        if created is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(created, ignore_errors=True)
