"""The write-tier benchmark's verdicts: ratios judged on both intervals."""

from __future__ import annotations

from typing import Any

from lancesync_bench.bench.tier import TierFigure, format_checks, judge_write_tier


def _fig(values: list[float]) -> dict[str, Any]:
    return TierFigure("x", values).as_dict()


def _result(service_write: list[float], raw_add: list[float], *, lost: int = 0) -> dict[str, Any]:
    steady = [1.0 + (i % 10) * 0.01 for i in range(1000)]
    figures = {
        "service_write": _fig(service_write),
        "raw_add": _fig(raw_add),
        "service_read": _fig(steady),
        "raw_static_read": _fig(steady),
        "read_after_kills": _fig(steady),
        "raw_static_read_after_kills": _fig(steady),
        "service_batch": _fig([2.0] * 400),
    }
    return {
        "figures": figures,
        "throughput_writes_per_s": {
            "process_1_writer": 2000.0,
            "process_4_writer": 2500.0,
            "fsync_1_writer": 900.0,
            "fsync_4_writer": 1800.0,
        },
        "after_kills": {"kills": 12, "acknowledged": 1000, "lost": lost},
    }


def test_clear_ratios_pass_and_fail_and_small_n_is_unsure() -> None:
    fast = [0.5 + (i % 7) * 0.01 for i in range(1000)]
    slow = [3.0 + (i % 7) * 0.01 for i in range(1000)]
    checks = {(c.what, c.service.split()[0]): c for c in judge_write_tier(_result(fast, slow))}
    assert checks[("single write vs raw add", "p50")].verdict == "PASS"
    assert checks[("single write vs raw add", "p99")].verdict == "PASS"
    assert checks[("read during writes vs static", "p99")].verdict == "PASS"  # 1.0x <= 1.5x
    assert checks[("100-doc batch write", "p99")].verdict == "PASS"
    verdicts = {c.what: c.verdict for c in judge_write_tier(_result(fast, slow))}
    assert verdicts["durable writes/s (process)"] == "PASS"
    assert verdicts["durable writes/s (fsync)"] == "FAIL"  # 900/s with one writer
    assert verdicts["kill -9 x12"] == "PASS"

    swapped = {(c.what, c.service.split()[0]): c for c in judge_write_tier(_result(slow, fast))}
    assert swapped[("single write vs raw add", "p50")].verdict == "FAIL"

    few = judge_write_tier(_result(fast[:50], slow[:50], lost=1))
    p99 = next(c for c in few if c.what == "single write vs raw add" and "p99" in c.service)
    assert p99.verdict == "UNSURE (n too small)"
    assert next(c for c in few if c.what.startswith("kill")).verdict == "FAIL"


def test_overlapping_intervals_are_unsure_and_the_table_is_aligned() -> None:
    a = [1.0 + (i % 100) * 0.02 for i in range(400)]
    b = [1.4 + (i % 100) * 0.02 for i in range(400)]
    checks = judge_write_tier(_result(a, b))
    p50 = next(c for c in checks if c.what == "single write vs raw add" and "p50" in c.service)
    assert p50.verdict.startswith(("UNSURE", "FAIL"))  # 0.8x: not clearly <= 0.5x
    text = format_checks(checks)
    lines = text.splitlines()
    assert lines[0].startswith("check") and len(lines) == len(checks) + 1


def test_a_batch_tail_the_machine_alone_explains_is_named_and_still_not_a_pass() -> None:
    # The batch: p50 ~2 ms, p99 ~9 ms. The reference job in the same loop: p99 4x its p50,
    # which on 2 ms alone is 8 ms (> 5 ms): the verdict names the machine, and stays FAIL.
    batch = [2.0] * 380 + [9.0] * 20
    result = _result([0.5] * 400, [3.0] * 400)
    result["figures"]["service_batch"] = _fig(batch)
    result["figures"]["batch_reference_job"] = _fig([1.0] * 380 + [4.0] * 20)
    checks = judge_write_tier(result)
    bound = next(c for c in checks if c.what == "100-doc batch write")
    assert bound.verdict.startswith("FAIL (machine: 4.00x on the batch's p50 alone is 8.0 ms")
    tail = next(c for c in checks if c.what == "100-doc batch tail vs the machine's")
    assert (tail.service, tail.ratio, tail.verdict) == ("p99/p50 4.50x", "1.12x", "info")

    # A quiet machine (reference p99 = p50) explains nothing: a plain FAIL.
    result["figures"]["batch_reference_job"] = _fig([1.0] * 400)
    bound = next(c for c in judge_write_tier(result) if c.what == "100-doc batch write")
    assert bound.verdict == "FAIL"
