"""Three gateway processes behind nginx on loopback, PostgreSQL for decisions, Redis for limits;
one replica is SIGKILLed under load (``loadtests/replicas.py``, run once for the module)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from loadtests import replicas

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> replicas.Report:
    if replicas.nginx_binary() is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    problem = replicas.postgres_problem(replicas.POSTGRES_URL)
    if problem:
        pytest.skip(problem)
    options = replicas.Options(replicas=3, seconds=12, kill_after=5, concurrency=6)
    folder: Path = tmp_path_factory.mktemp("replicas")
    result = replicas.run(options, folder)
    print(result.text())
    return result


def test_only_the_killed_replicas_in_flight_requests_fail(report: replicas.Report) -> None:
    assert report.kill is not None and report.before is not None and report.after is not None
    # every failure is a request nginx had handed to the killed replica...
    assert report.server_errors_from_victim == len(report.server_errors), report.text()
    # ...while it died: none that started once nginx had noticed
    assert report.late_server_errors == [], report.text()
    assert {s.request_id for s in report.server_errors} <= report.victim_in_flight
    # nothing else failed: no 4xx, no timeouts, no answer without a choice (a request cut off
    # mid-response by the kill is a connection error instead of a 502, and counted above)
    failures = report.before.errors() + report.after.errors()
    assert not [kind for kind in failures if kind[0] == "4" or "Timeout" in kind], report.text()
    assert "no choices" not in failures, report.text()
    assert sum(failures.values()) == len(report.server_errors), report.text()


def test_the_survivors_keep_serving(report: replicas.Report) -> None:
    assert report.after is not None and report.before is not None
    assert len(report.before.ok) > 0 and len(report.after.ok) > 0
    assert len(report.survivors_after_kill) == 2
    assert all(count > 0 for count in report.survivors_after_kill.values()), report.text()
    assert sum(report.survivors_after_kill.values()) == len(report.after.ok)


def test_every_request_a_survivor_answered_is_in_the_decision_store(
    report: replicas.Report,
) -> None:
    assert report.survivors_unstored == set(), report.text()
    stored, answered = report.victim_stored
    assert answered > 0 and stored <= answered  # the killed one loses at most its queue


def test_per_key_limits_are_shared_across_replicas(report: replicas.Report) -> None:
    if report.limits_skipped:
        pytest.skip(f"limits part skipped: {report.limits_skipped}")
    # two surviving replicas; counted per process, each would admit TIGHT_RPM
    counts = Counter(report.tight_statuses)
    assert counts == {200: replicas.TIGHT_RPM, 429: replicas.TIGHT_RPM}, report.text()
    assert report.key_name_logged, "the key's name is on the request lines"
