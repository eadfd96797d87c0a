"""Confidence intervals of latency percentiles and of recall, and verdicts judged on them.

A judged percentile carries a distribution-free confidence interval: two
order statistics chosen from the binomial distribution of how many samples fall below the
true quantile (:func:`percentile_interval`). It needs more samples than the point figure:
at 95 %, p50 needs 6, p95 needs 72, p99 needs 368 (:func:`interval_min_samples`). A verdict
is PASS only when the whole interval meets the target, FAIL only when the whole interval
misses it, and UNSURE otherwise, or when n cannot support the interval
(:func:`judge_interval`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lancesync_bench.stats import (
    Samples,
    Status,
    Summary,
    Target,
    Verdict,
    judge,
    loopback_in_band,
    ms_array,
)

__all__ = [
    "CONFIDENCE",
    "Interval",
    "interval_min_samples",
    "judge_interval",
    "judge_recall",
    "mean_interval",
    "percentile_interval",
]

# Every interval in a verdict is at this level: a PASS or FAIL is wrong at most 1 time in
# 40 per side, the usual standard for a figure an engineer signs.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``low .. high`` (ms for latency, a fraction for recall)."""

    low: float
    high: float
    confidence: float = CONFIDENCE

    def describe(self, unit: str = "ms") -> str:
        """Such as ``95% CI 3.10-4.20 ms`` (recall: ``95% CI 0.412-0.471``)."""
        level = f"{100 * self.confidence:g}% CI"
        if unit == "ms":
            return f"{level} {self.low:.2f}-{self.high:.2f} ms"
        return f"{level} {self.low:.3f}-{self.high:.3f}"


def _order_ranks(n: int, q: float, confidence: float) -> tuple[int, int]:
    """1-based ranks ``(l, u)`` of the order statistics bounding quantile ``q`` (fraction).

    The count of samples at or below the true quantile is Binomial(n, q), so
    ``P(x_(l) <= quantile < x_(u)) = F(u - 1) - F(l - 1)``. ``l`` is the smallest count with
    ``F(l) >= alpha/2`` (then ``F(l - 1) < alpha/2``) and ``u - 1`` the smallest with
    ``F(u - 1) >= 1 - alpha/2``: coverage is at least ``confidence``. ``l < 1`` or ``u > n``
    means n is too small for that side. scipy gives the quantile function of the binomial.
    """
    from scipy.stats import binom

    tail = (1.0 - confidence) / 2.0
    low = int(binom.ppf(tail, n, q))
    high = int(binom.ppf(1.0 - tail, n, q)) + 1
    return low, high


def percentile_interval(
    samples_ns: Samples, q: float, *, confidence: float = CONFIDENCE
) -> Interval | None:
    """Distribution-free interval of percentile ``q`` (percent) in ms; None when n is too small.

    Order statistics chosen by the binomial distribution (:func:`_order_ranks`): no
    assumption about the shape of the latency distribution, exact coverage of at least
    ``confidence`` (it matches ``scipy.stats.quantile_test(...).confidence_interval``).
    """
    if not 0 < q < 100 or not 0 < confidence < 1:
        raise ValueError(f"need 0 < q < 100 and 0 < confidence < 1; got {q}, {confidence}")
    ms = np.sort(ms_array(samples_ns))
    n = len(ms)
    if n == 0:
        return None
    low, high = _order_ranks(n, q / 100.0, confidence)
    if low < 1 or high > n:
        return None
    return Interval(float(ms[low - 1]), float(ms[high - 1]), confidence)


def interval_min_samples(q: float, *, confidence: float = CONFIDENCE) -> int:
    """The fewest samples for which :func:`percentile_interval` gives an interval.

    The upper rank fits when ``q^n <= alpha/2`` (the chance that every sample falls below
    the quantile is small enough); the lower one when ``(1-q)^n < alpha/2``. At 95 %: p50
    needs 6, p95 72, p99 368.
    """
    if not 0 < q < 100 or not 0 < confidence < 1:
        raise ValueError(f"need 0 < q < 100 and 0 < confidence < 1; got {q}, {confidence}")
    p, tail = q / 100.0, (1.0 - confidence) / 2.0
    need_high = math.ceil(math.log(tail) / math.log(p) - 1e-9)
    need_low = math.floor(math.log(tail) / math.log(1.0 - p)) + 1
    return max(need_high, need_low, 1)


def mean_interval(
    values: Iterable[float], *, confidence: float = CONFIDENCE, seed: int = 0
) -> Interval | None:
    """Bootstrap interval of the mean of ``values`` (scipy.stats.bootstrap, percentile method).

    Used for recall@k averaged over queries. The percentile method, not BCa: recall is often
    1.0 for every query, where BCa is undefined and percentile gives ``1.0-1.0``. None for
    fewer than 2 values.
    """
    from scipy.stats import bootstrap

    data = np.asarray(list(values), dtype=np.float64)
    if len(data) < 2:
        return None
    if np.all(data == data[0]):  # nothing to resample: the interval is the value itself
        return Interval(float(data[0]), float(data[0]), confidence)
    # 2000 resamples put each 2.5 % tail on ~50 resamples: bounds stable to ~1 %.
    res = bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return Interval(float(ci.low), float(ci.high), confidence)


def _where(profile: str | None) -> str:
    return f" on {profile}" if profile else ""


def judge_interval(
    summary: Summary, target: Target, interval: Interval | None, *, profile: str | None = None
) -> Verdict:
    """Hold a percentile and its confidence interval against ``target``.

    ``interval`` None means n could not support one (:func:`interval_min_samples`): UNSURE,
    "n too small". Upper bound: PASS when the whole interval is below it, FAIL when the whole
    interval is at or above it, else UNSURE. Band: FAIL when the interval is wholly above it,
    BELOW when wholly below (see :func:`judge`), PASS when wholly inside, else UNSURE. A
    statistic with no interval (mean, min, max) is judged on its point figure alone.
    """
    if not target.stat.startswith("p"):
        return judge(summary, target, profile=profile)
    value = summary.stat(target.stat)
    q = float(target.stat[1:])
    if interval is None:
        need = interval_min_samples(q)
        shown = "-" if value is None else f"{value:.2f} ms"
        return Verdict(
            "UNSURE",
            value,
            f"n too small: n={summary.n} cannot support a 95% interval of {target.stat}"
            f" (needs {need}); {shown} vs {target.describe()}",
        )
    shown = f"{value:.2f} ms" if value is not None else "-"
    if target.lower_ms is None:
        return _judge_upper(value, shown, target, interval)
    return _judge_band(value, shown, target, interval, profile)


def _judge_upper(value: float | None, shown: str, target: Target, ci: Interval) -> Verdict:
    text = ci.describe()
    if ci.high < target.upper_ms:
        return Verdict("PASS", value, f"{shown} ({text}) vs {target.describe()}")
    if ci.low >= target.upper_ms:
        return Verdict("FAIL", value, f"{shown} ({text}) vs {target.describe()}")
    return Verdict(
        "UNSURE", value, f"{shown}: {text} straddles {target.describe()}; more samples decide"
    )


def _judge_band(
    value: float | None, shown: str, target: Target, ci: Interval, profile: str | None
) -> Verdict:
    text, lower = ci.describe(), target.lower_ms or 0.0
    if ci.low > target.upper_ms:
        return Verdict("FAIL", value, f"{shown} ({text}) above band {target.describe()}")
    if ci.high < lower:
        kind = "loopback" if profile == "loopback" else f"emulated {profile}" if profile else ""
        label = f"below band ({kind})" if kind else "below band"
        return Verdict("BELOW", value, f"{label}: {shown} ({text}), not a failure")
    if profile == "loopback" and ci.high <= target.upper_ms:
        return Verdict("BELOW", value, loopback_in_band(f"{shown} ({text})", target))
    if ci.low >= lower and ci.high <= target.upper_ms:
        return Verdict(
            "PASS", value, f"{shown} ({text}) within band {target.describe()}{_where(profile)}"
        )
    return Verdict("UNSURE", value, f"{shown}: {text} crosses an edge of band {target.describe()}")


def judge_recall(mean: float, interval: Interval | None, minimum: float) -> Status:
    """Recall against a lower bound: PASS when the whole interval is at or above ``minimum``,
    FAIL when it is wholly below, UNSURE otherwise (or with no interval)."""
    if interval is None:
        return "UNSURE"
    if interval.low >= minimum:
        return "PASS"
    if interval.high < minimum:
        return "FAIL"
    return "UNSURE"
