"""The ``--workers`` supervisor: SO_REUSEPORT sockets share a port, signals reach the workers,
a worker that exits by itself stops the rest, a dead worker's live metric files go."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sdm_router.api.serve.workers import Supervisor, reuse_port_socket, reuse_port_supported

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT")


def wait_for_sigterm(marker: str) -> None:
    """A worker: exits 0 on SIGTERM (after writing its pid to ``marker``)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    Path(marker, str(os.getpid())).write_text("up")
    stop.wait(60)
    sys.exit(0 if stop.is_set() else 5)


def exit_at_once(code: int) -> None:
    """A worker whose startup fails."""
    sys.exit(code)


def test_reuse_port_sockets_share_a_port() -> None:
    assert reuse_port_supported()
    first = reuse_port_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        second = reuse_port_socket("127.0.0.1", port)
        second.close()
    finally:
        first.close()


def test_sigterm_reaches_every_worker_and_status_is_zero(tmp_path: Path) -> None:
    supervisor = Supervisor(wait_for_sigterm, (str(tmp_path),), 2)

    def signal_when_up() -> None:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # as the container runtime would

    threading.Thread(target=signal_when_up, daemon=True).start()
    assert supervisor.run() == 0
    assert len(list(tmp_path.iterdir())) == 2
    assert supervisor.pids == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_workers_exiting_by_themselves_fail_the_supervisor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics))
    started = time.monotonic()
    assert Supervisor(exit_at_once, (3,), 2).run() == 1
    assert time.monotonic() - started < 60


def test_a_signal_while_a_worker_starts_still_reaches_it(tmp_path: Path) -> None:
    class SignalledWhileStarting(Supervisor):
        def _start(self, number: int) -> Any:
            worker = super()._start(number)
            deadline = time.monotonic() + 30
            while not list(tmp_path.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.02)  # the worker is up (its SIGTERM handler set) ...
            self._stopping = True  # ... and the SIGTERM lands before the worker is listed
            return worker

    supervisor = SignalledWhileStarting(wait_for_sigterm, (str(tmp_path),), 1)
    started = time.monotonic()
    assert supervisor.run() == 0  # the worker got its SIGTERM and exited cleanly
    assert time.monotonic() - started < 50  # not the worker's own 60 s give-up
