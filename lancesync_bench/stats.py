"""Latency statistics with an n guard, regression comparisons, and verdicts against targets.

Samples are raw ``time.perf_counter_ns()`` differences; every figure is reported in ms.

**Machine noise.** Samples may carry a ``machine_slowdown`` figure from a CPU probe run
around them (:mod:`lancesync_bench.bench.probe`); at :data:`SLOWED` (2) or above, the CPU
ran at half speed or worse. :func:`steady` counts such samples and gives the percentiles of
the others, so a verdict can say whether the machine explains a miss. Those figures sit
beside the judged ones and never replace them: every verdict is judged on all samples.

**Which percentiles n supports.** Percentile ``q`` (as a fraction) is reported only when
``n >= ceil(1 / (1 - q))``: p50 needs 2 samples, p95 needs 20, p99 needs 100. Below that,
fewer than one sample is expected above the q-quantile, so any estimate is the maximum (or
an interpolation towards it) under another name; such a percentile is ``None``, never a
number. ``max`` and ``mean`` need one sample. Percentiles use NumPy's default (linear
interpolation between order statistics, Hyndman-Fan type 7), so they match ``np.percentile``.

Confidence intervals and the verdicts judged on them live in :mod:`lancesync_bench.intervals`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "SLOWED",
    "Comparison",
    "Steady",
    "Summary",
    "Target",
    "Targets",
    "Verdict",
    "compare",
    "judge",
    "loopback_in_band",
    "min_samples",
    "ms_array",
    "percentile",
    "steady",
    "steady_status",
    "summarize",
    "verdict",
]

_NS_PER_MS = 1e6
# The normal approximation to Mann-Whitney U is poor below ~8 values per group; with fewer,
# no p-value is given (and nothing can be called a regression).
MIN_TEST_SAMPLES = 8
Samples = npt.ArrayLike
_STATS = ("mean", "min", "p50", "p95", "p99", "max")


def min_samples(q: float) -> int:
    """Samples needed for percentile ``q`` (in percent, 0 <= q < 100): ``ceil(1/(1-q))``."""
    if not 0 <= q < 100:
        raise ValueError(f"percentile must be in [0, 100); got {q}")
    # The epsilon absorbs float error: 100 / (100 - 99) must give 100, not 101.
    return max(1, math.ceil(100.0 / (100.0 - q) - 1e-9))


def _ms(samples_ns: Samples) -> npt.NDArray[np.float64]:
    return np.asarray(samples_ns, dtype=np.float64).reshape(-1) / _NS_PER_MS


def ms_array(samples_ns: Samples) -> npt.NDArray[np.float64]:
    """Samples in ns as a flat float64 array in ms."""
    return _ms(samples_ns)


def _guarded(ms: npt.NDArray[np.float64], q: float) -> float | None:
    return None if len(ms) < min_samples(q) else float(np.percentile(ms, q))


def percentile(samples_ns: Samples, q: float) -> float | None:
    """Percentile ``q`` (percent) in ms, or None when n is below :func:`min_samples`."""
    return _guarded(_ms(samples_ns), q)


@dataclass(frozen=True)
class Summary:
    """n and latency figures in ms; a figure that n cannot support is None."""

    n: int
    mean_ms: float | None
    min_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-ready)."""
        return asdict(self)

    def stat(self, name: str) -> float | None:
        """A figure by name: ``"p50"``, ``"p95"``, ``"p99"``, ``"max"``, ``"mean"``, ``"min"``."""
        if name not in _STATS:
            raise ValueError(f"unknown statistic {name!r}; allowed: {', '.join(_STATS)}")
        value: float | None = getattr(self, f"{name}_ms")
        return value


def summarize(samples_ns: Samples) -> Summary:
    """Summarise raw samples in nanoseconds."""
    ms = _ms(samples_ns)
    some = len(ms) > 0
    return Summary(
        n=len(ms),
        mean_ms=float(ms.mean()) if some else None,
        min_ms=float(ms.min()) if some else None,
        p50_ms=percentile(samples_ns, 50),
        p95_ms=percentile(samples_ns, 95),
        p99_ms=percentile(samples_ns, 99),
        max_ms=float(ms.max()) if some else None,
    )


# machine_slowdown at or above this: the CPU ran at half speed or worse around the sample.
SLOWED = 2.0
_STEADY_STATS = ("p95", "p99")


@dataclass(frozen=True)
class Steady:
    """Machine noise of one group of samples; all None when none of them was probed.

    ``slowed_n`` samples had ``machine_slowdown >= SLOWED``; the ``steady_n`` others (probed,
    below it) give ``steady_p95_ms`` and ``steady_p99_ms`` under the usual n guard.
    """

    slowed_n: int | None
    steady_n: int | None
    steady_p95_ms: float | None
    steady_p99_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-ready)."""
        return asdict(self)


def steady(
    samples_ns: Samples, slowdowns: Iterable[float | None], *, threshold: float = SLOWED
) -> Steady:
    """Count the slowed samples and summarise the steady rest (``slowdowns`` in sample order).

    A sample without a figure (None or NaN: no probe ran) is neither slowed nor steady.
    """
    ms = _ms(samples_ns)
    slow = np.asarray(
        [math.nan if v is None else float(v) for v in slowdowns], dtype=np.float64
    ).reshape(-1)
    if len(slow) != len(ms):
        raise ValueError(f"{len(ms)} samples but {len(slow)} slowdown figures")
    probed = ~np.isnan(slow)
    if not probed.any():
        return Steady(None, None, None, None)
    calm = ms[probed & (slow < threshold)]
    return Steady(
        slowed_n=int((slow[probed] >= threshold).sum()),
        steady_n=len(calm),
        steady_p95_ms=_guarded(calm, 95),
        steady_p99_ms=_guarded(calm, 99),
    )


@dataclass(frozen=True)
class Comparison:
    """Candidate ``b`` against baseline ``a``; ratios are b / a (above 1: b is slower)."""

    n_a: int
    n_b: int
    median_ratio: float | None
    p95_ratio: float | None  # None when either side has fewer than 20 samples
    p_value: float | None  # two-sided Mann-Whitney U; None below MIN_TEST_SAMPLES per side
    prob_b_slower: float | None  # P(b > a) + P(b == a)/2, the common-language effect size
    ci_low: float | None  # bootstrap confidence interval of median_ratio
    ci_high: float | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-ready)."""
        return asdict(self)


def _ratio(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None or a <= 0 else b / a


def mann_whitney(a: Samples, b: Samples) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test (normal approximation, tie-corrected, continuity-corrected).

    Returns ``(p_value, prob_b_slower)`` where ``prob_b_slower = U_b / (n_a * n_b)``.
    """
    x, y = _ms(a), _ms(b)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney needs at least one sample on each side")
    both = np.concatenate([x, y])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    # Tied values share the mean of the ranks they span.
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_b = float(mean_rank[inverse][n1:].sum())
    u_b = rank_b - n2 * (n2 + 1) / 2.0
    mu = n1 * n2 / 2.0
    n = n1 + n2
    tie_term = float(np.sum(counts.astype(np.float64) ** 3 - counts)) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
    if sigma == 0:  # every value equal: no evidence of any difference
        return 1.0, 0.5
    z = (abs(u_b - mu) - 0.5) / sigma
    p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
    return min(1.0, p), u_b / (n1 * n2)


def _bootstrap_ci(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], *, level: float, seed: int
) -> tuple[float | None, float | None]:
    # 2000 resamples put the 2.5 % / 97.5 % bounds on ~50 resamples each: stable to ~1 %.
    # Resampling in chunks keeps memory near 16 MB per side whatever the sample count.
    rounds, rng = 2000, np.random.default_rng(seed)
    step = max(1, 2_000_000 // max(len(a), len(b)))
    med_a, med_b = np.empty(rounds), np.empty(rounds)
    for lo in range(0, rounds, step):
        m = min(step, rounds - lo)
        med_a[lo : lo + m] = np.median(a[rng.integers(0, len(a), (m, len(a)))], axis=1)
        med_b[lo : lo + m] = np.median(b[rng.integers(0, len(b), (m, len(b)))], axis=1)
    ok = med_a > 0
    if not ok.any():
        return None, None
    ratios = med_b[ok] / med_a[ok]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return float(low), float(high)


def compare(
    a_samples: Samples, b_samples: Samples, *, ci_level: float = 0.95, seed: int = 0
) -> Comparison:
    """Compare candidate ``b_samples`` with baseline ``a_samples`` (both in ns)."""
    a, b = _ms(a_samples), _ms(b_samples)
    sa, sb = summarize(a_samples), summarize(b_samples)
    testable = min(len(a), len(b)) >= MIN_TEST_SAMPLES
    p_value, prob = mann_whitney(a_samples, b_samples) if testable else (None, None)
    low, high = _bootstrap_ci(a, b, level=ci_level, seed=seed) if testable else (None, None)
    return Comparison(
        n_a=len(a),
        n_b=len(b),
        median_ratio=_ratio(sb.p50_ms, sa.p50_ms),
        p95_ratio=_ratio(sb.p95_ms, sa.p95_ms),
        p_value=p_value,
        prob_b_slower=prob,
        ci_low=low,
        ci_high=high,
    )


Status = Literal["PASS", "FAIL", "UNSURE", "N/A", "BELOW"]


@dataclass(frozen=True)
class Target:
    """An upper bound (``upper_ms``) or a band (``lower_ms`` .. ``upper_ms``) on one figure."""

    name: str
    upper_ms: float
    lower_ms: float | None = None  # set for a band, such as S3's 50-200 ms
    stat: str = "p95"

    def __post_init__(self) -> None:
        low = self.lower_ms if self.lower_ms is not None else 0.0
        if self.stat not in _STATS or not 0 <= low < self.upper_ms:
            raise ValueError(f"invalid target {self!r}: stat in {_STATS}, 0 <= lower < upper")

    def describe(self) -> str:
        """The target as text, such as ``p95 < 10 ms`` or ``p50 in 50-200 ms``."""
        if self.lower_ms is None:
            return f"{self.stat} < {self.upper_ms:g} ms"
        return f"{self.stat} in {self.lower_ms:g}-{self.upper_ms:g} ms"


@dataclass(frozen=True)
class Targets:
    """The spec's latency targets (defaults are the spec's figures)."""

    local_read_ms: float = 10.0
    local_write_ms: float = 10.0
    s3_min_ms: float = 50.0
    s3_max_ms: float = 200.0
    local_point_read_p99_ms: float = 5.0  # the storage issue's finer targets
    vector_top10_p99_ms: float = 10.0
    vector_top10_size: int = 100_000  # the table size the vector target is stated for
    # A vector top-10 must find at least this share of the exact top-10 (issue 13): a fast
    # search that misses half the neighbours is not a pass.
    recall_at_10: float = 0.95

    def as_targets(self) -> dict[str, Target]:
        """Targets by name, each with the statistic it is judged on.

        The spec's "< 10 ms" local figures are judged at p95: "almost always", without one
        fsync stall deciding the verdict; the finer targets state p99 and get it. The S3
        band is LanceDB's typical figure for cloud object storage: judged at p50, and at p95
        too (``*_p95``), so that a typical figure does not hide a slow tail.
        """
        band = (self.s3_max_ms, self.s3_min_ms)
        return {
            "local_read": Target("local_read", self.local_read_ms, stat="p95"),
            "local_write": Target("local_write", self.local_write_ms, stat="p95"),
            "s3_read": Target("s3_read", *band, "p50"),
            "s3_write": Target("s3_write", *band, "p50"),
            "s3_read_p95": Target("s3_read_p95", *band, "p95"),
            "s3_write_p95": Target("s3_write_p95", *band, "p95"),
            "local_point_read": Target(
                "local_point_read", self.local_point_read_p99_ms, stat="p99"
            ),
            "vector_top10": Target("vector_top10", self.vector_top10_p99_ms, stat="p99"),
        }


@dataclass(frozen=True)
class Verdict:
    """The outcome of a figure against a target, with the figure and a one-line note."""

    status: Status
    value_ms: float | None
    note: str


def judge(summary: Summary, target: Target, *, profile: str | None = None) -> Verdict:
    """Hold ``summary`` against ``target``.

    * The figure is missing (n too small for the percentile): ``N/A``.
    * Upper bound: ``PASS`` when the figure is below it, else ``FAIL``.
    * Band: above the band is ``FAIL`` (a network can only add latency, so a figure already
      too slow stays too slow); inside is ``PASS``; below the band is ``BELOW``, never
      ``FAIL``. The band describes what cloud S3 costs over a real network; a loopback
      server or emulated RTT being faster says the service adds little overhead, not that it
      misses a target. The note says so, naming the profile when given. On loopback a
      figure inside the band is ``BELOW`` as well: no network was in it, so it is no
      network figure to pass (a 107 ms cache miss on loopback is slow, not "in band").
    """
    value = summary.stat(target.stat)
    where = f" on {profile}" if profile else ""
    if value is None:
        need = min_samples(float(target.stat[1:])) if target.stat[1:].isdigit() else 1
        return Verdict("N/A", None, f"n={summary.n} cannot support {target.stat} (needs {need})")
    if target.lower_ms is None:
        ok = value < target.upper_ms
        return Verdict("PASS" if ok else "FAIL", value, f"{value:.2f} ms vs {target.describe()}")
    if value > target.upper_ms:
        return Verdict("FAIL", value, f"{value:.2f} ms above band {target.describe()}{where}")
    if value < target.lower_ms:
        kind = "loopback" if profile == "loopback" else f"emulated {profile}" if profile else ""
        label = f"below band ({kind})" if kind else "below band"
        return Verdict("BELOW", value, f"{label}: {value:.2f} ms, not a failure")
    if profile == "loopback":
        return Verdict("BELOW", value, loopback_in_band(f"{value:.2f} ms", target))
    return Verdict("PASS", value, f"{value:.2f} ms within band {target.describe()}{where}")


def loopback_in_band(shown: str, target: Target) -> str:
    """The note of a loopback figure that falls inside an S3 band."""
    return (
        f"loopback: {shown} lies inside {target.describe()} but no network was in it; "
        "not a network figure, judged BELOW"
    )


def verdict(summary: Summary, target: Target, *, profile: str | None = None) -> Status:
    """The status of :func:`judge`: ``PASS``, ``FAIL``, ``N/A`` or ``BELOW`` (under a band)."""
    return judge(summary, target, profile=profile).status


def steady_status(
    status: Status, target: Target, value_ms: float | None, *, profile: str | None = None
) -> Status | None:
    """For a ``FAIL`` at p95 or p99: the steady samples' figure ``value_ms`` judged alike.

    None for any other status or statistic, and when ``value_ms`` is None (too few steady
    samples). The answer says whether the machine explains a miss; it never changes
    ``status``.
    """
    if status != "FAIL" or target.stat not in _STEADY_STATS or value_ms is None:
        return None
    p95, p99 = (value_ms, None) if target.stat == "p95" else (None, value_ms)
    figures = Summary(
        n=0, mean_ms=None, min_ms=None, p50_ms=None, p95_ms=p95, p99_ms=p99, max_ms=None
    )
    return judge(figures, target, profile=profile).status
