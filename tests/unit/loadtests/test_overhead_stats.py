"""The percentile and overhead arithmetic of ``loadtests.overhead`` (no servers)."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from loadtests.overhead import (
    LevelResult,
    Samples,
    chat_url,
    format_comparison,
    overhead,
    paired_overhead,
    parse_args,
    parse_cpus,
    percentile,
    request_body,
)


def test_percentile_interpolates_between_order_statistics() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 99) == pytest.approx(1.0 + 3 * 0.99)


def test_percentile_of_one_value_and_of_none() -> None:
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 101)


def test_p99_of_a_hundred_values_reads_near_the_top() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == pytest.approx(99.01)


def test_overhead_is_the_difference_of_percentiles() -> None:
    direct = Samples(batches=[[1.0, 2.0, 3.0]])
    gateway = Samples(batches=[[2.0, 4.0, 9.0]])
    assert overhead(direct, gateway, 50) == pytest.approx(2.0)
    assert overhead(direct, gateway, 100) == pytest.approx(6.0)


def test_paired_overhead_is_the_median_of_per_batch_differences() -> None:
    direct = Samples(batches=[[1.0], [10.0], [1.0]])
    gateway = Samples(batches=[[2.0], [13.0], [6.0]])  # differences 1, 3, 5
    assert paired_overhead(direct, gateway, 50) == pytest.approx(3.0)
    # a pooled comparison would mix the slow batch into both sides differently
    assert overhead(direct, gateway, 50) == pytest.approx(5.0)


def test_throughput_and_error_counts() -> None:
    samples = Samples(batches=[[0.1] * 30, [0.1] * 20], wall_seconds=2.0)
    samples.errors.update({"gateway: status 502": 2})
    assert samples.throughput == pytest.approx(25.0)
    assert samples.errors == Counter({"gateway: status 502": 2})
    assert math.isnan(Samples().throughput)


def test_urls_and_request_body() -> None:
    assert chat_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    plain = json.loads(request_body("auto", stream=False))
    streamed = json.loads(request_body("auto", stream=True))
    assert plain["model"] == "auto" and "stream" not in plain
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}


def test_cpu_lists_as_taskset_takes_them() -> None:
    assert parse_cpus("") == frozenset()
    assert parse_cpus("0") == {0}
    assert parse_cpus("0,2-3") == {0, 2, 3}


def test_another_proxy_needs_the_upstream_it_forwards_to() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--other-url", "http://127.0.0.1:4000"])
    args = parse_args(["--other-url", "http://127.0.0.1:4000", "--upstream-port", "9001"])
    assert args.other_label == "other" and args.other_model == "good"


def test_the_comparison_puts_both_proxies_side_by_side() -> None:
    direct = Samples(batches=[[0.001] * 10], wall_seconds=0.01)
    ours = Samples(batches=[[0.002] * 10], wall_seconds=0.02)
    theirs = Samples(batches=[[0.011] * 10], wall_seconds=0.11)
    result = LevelResult(16, direct, ours, 0.005, 0.0, other=theirs, other_cpu_seconds=0.05)
    row = format_comparison([result], "litellm").splitlines()[-1].split("|")
    assert row[1].split() == ["1.00", "10.00", "0.10"]  # p50 overhead: ours, theirs, ratio
    assert row[4].split() == ["500", "91", "5.50"]  # req/s
    assert row[5].split() == ["0.50", "5.00", "0.10"]  # CPU ms per request
