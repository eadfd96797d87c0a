"""The regression rule: per-round medians, scaled by the reference job, judged across rounds.

Why not a test on the samples of one run: on a shared 2-core machine the whole run drifts
(FACTS.md, "Run-to-run noise": one commit a minute apart, add_1 p50 2.05x). Samples within
a run share that run's machine state, so a test that treats them as independent calls the
drift significant. Here the unit of evidence is the run (a *round*, one process, as pyperf
and asv continuous do):

1. each round gives one figure per key: the median latency, beside the median of the
   reference job (:data:`~lancesync_bench.bench.probe.REFERENCE_PATH`, fixed CPU work timed
   like an operation) measured in the same cell, so a round on a slower CPU is scaled back
   by as much as the key follows the reference (:func:`judge_key`);
2. per key, a t-test on the logs of those figures, A rounds against B rounds: the spread
   it weighs the shift against is the spread *between rounds*;
3. the p-values of all keys are corrected together (Benjamini-Hochberg);
4. a key is a regression only when B/A reaches the threshold *and* the corrected test says
   the shift is larger than the between-round noise; a large ratio the noise can explain
   is ``unsure``.

With one round on either side the between-round noise cannot be estimated: no key is
tested and none can be a regression; a ratio past the threshold is ``unsure``, any other
``untested``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

__all__ = [
    "CONFIDENCE",
    "DEFAULT_ALPHA",
    "DEFAULT_THRESHOLD",
    "MIN_ROUNDS",
    "GateVerdict",
    "KeyJudgement",
    "adjust",
    "judge_key",
    "judge_keys",
]

# 1.3x: the smallest slowdown the gate is asked to catch. Below it the rounds cannot tell
# a shift from drift: on the project's 2-core VM shared with other jobs (load average 4-5),
# per-round medians of one commit moved by 9-68 % (one SD, per key; 2026-12, gates of one
# commit against itself and against its parent), so 3-5 rounds a side put a 1.1-1.2x shift
# inside the noise, and a gate failing on it would fail on noise. Lower it on a dedicated,
# quiet machine, where the noise column shows what the rounds can resolve.
DEFAULT_THRESHOLD = 1.3
# 5 % false discovery rate across keys. When nothing changed (every key null, the case a
# gate must not fail on) Benjamini-Hochberg's FDR equals the chance of any false alarm, so
# this is also the gate's false-fail rate before the threshold, which cuts it further.
DEFAULT_ALPHA = 0.05
# The interval shown beside each ratio, and the one a key must stay inside to be "same".
CONFIDENCE = 0.95
# A t-test needs a variance: two rounds on each side at least.
MIN_ROUNDS = 2

GateVerdict = Literal["regression", "improvement", "same", "unsure", "untested"]
K = TypeVar("K")


@dataclass(frozen=True)
class KeyJudgement:
    """One key judged across rounds. Ratios are B / A of per-round medians (see judge_key)."""

    verdict: GateVerdict
    ratio: float | None  # geometric mean of B's figures over A's; None without both sides
    ci_low: float | None  # CONFIDENCE interval of ratio (t-distribution); None when untested
    ci_high: float | None
    p_value: float | None  # two-sided pooled t-test on log figures; None when untested
    round_sd: float | None  # pooled between-round standard deviation of log figures
    # B/A of the raw figures (geometric means), set when ``ratio`` allows for the reference
    # job: a verdict needs the two to agree (see _verdict).
    raw_ratio: float | None = None

    def with_adjusted(
        self, p_adjusted: float | None, *, threshold: float, alpha: float
    ) -> KeyJudgement:
        """This judgement with its verdict decided on a corrected p-value."""
        verdict = _verdict(self, p_adjusted, threshold=threshold, alpha=alpha)
        return KeyJudgement(
            verdict,
            self.ratio,
            self.ci_low,
            self.ci_high,
            p_adjusted,
            self.round_sd,
            self.raw_ratio,
        )


def _verdict(j: KeyJudgement, p: float | None, *, threshold: float, alpha: float) -> GateVerdict:
    if j.ratio is None:
        return "untested"
    outside = j.ratio >= threshold or j.ratio <= 1.0 / threshold
    if p is None or j.ci_low is None or j.ci_high is None:
        # One round on a side: no between-round noise to weigh the shift against. A ratio
        # past the threshold may be the machine's drift alone (2x was seen a minute apart),
        # and one within it may hide a regression behind a faster round: neither is judged.
        return "unsure" if outside else "untested"
    # Allowing for the reference job may move the ratio where the raw figures do not go:
    # a gate of one commit saw its reference run 0.66x in B, and a key whose raw figures
    # held at 0.99x became 1.32x at p 0.002. The reference, not the key, had shifted. So
    # a verdict also needs the raw ratio to lean its way, at least halfway to the threshold
    # (geometrically: 1.14x for 1.3); the reference only sharpens what the raw rounds show.
    lean = math.sqrt(threshold)
    if p < alpha and j.ratio >= threshold and (j.raw_ratio is None or j.raw_ratio >= lean):
        return "regression"
    if (
        p < alpha
        and j.ratio <= 1.0 / threshold
        and (j.raw_ratio is None or j.raw_ratio <= 1 / lean)
    ):
        return "improvement"
    # "same" needs the whole interval inside the band: a shift of the threshold's size is
    # ruled out. Anything else (a wide interval, a significant but small shift reaching
    # past the band, figures that disagree) the rounds cannot settle.
    if 1.0 / threshold < j.ci_low and j.ci_high < threshold:
        return "same"
    return "unsure"


def judge_key(
    a: Sequence[float],
    b: Sequence[float],
    ref_a: Sequence[float] | None = None,
    ref_b: Sequence[float] | None = None,
) -> KeyJudgement:
    """Test one key: ``a`` and ``b`` hold one positive figure per round (A baseline, B candidate).

    ``ref_a``/``ref_b``, when given, hold each round's reference-job median (same order).
    The key's log figures are then fitted as ``shift * is_B + slope * log(reference)``
    (:func:`_fit_with_reference`): the reference scales a round by as much as this key
    follows it, and the ratio is B/A at equal reference speed. With a slope of 1 that is
    dividing by the reference; the data decide, because the reference job runs in its own
    short window: on a machine shared with other jobs it was measured 2x slow in a round
    whose operations were not, and the other way round, and dividing by it then turned
    such rounds into false regressions.

    Without references (or too few rounds to fit a slope), Student's two-sample t-test on
    the logs, with pooled variance: on the log scale a slowdown shifts a key's figures
    without widening them. A rank or permutation test cannot serve: with 5 rounds a side
    there are only 252 arrangements, so no p-value falls below 2/252 = 0.008, and after
    correcting for ~10 keys nothing could ever be significant. The verdict here is
    provisional (uncorrected); :func:`judge_keys` decides.
    """
    la, lb = _logs(a), _logs(b)
    if len(la) == 0 or len(lb) == 0:
        return KeyJudgement("untested", None, None, None, None, None)
    if ref_a is not None and ref_b is not None:
        ra, rb = _logs(ref_a), _logs(ref_b)
        fitted = _fit_with_reference(la, lb, ra, rb)
        if fitted is not None:
            return replace(fitted, raw_ratio=math.exp(float(lb.mean() - la.mean())))
        la, lb = la - ra, lb - rb  # too few rounds to fit a slope: divide by the reference
    ratio = math.exp(float(lb.mean() - la.mean()))
    if min(len(la), len(lb)) < MIN_ROUNDS:
        return KeyJudgement("untested", ratio, None, None, None, None)
    dof = len(la) + len(lb) - 2
    pooled = ((len(la) - 1) * la.var(ddof=1) + (len(lb) - 1) * lb.var(ddof=1)) / dof
    sd = math.sqrt(float(pooled))
    if sd == 0.0:
        # Identical figures on both sides of every round (the same run given twice): no
        # shift and no noise; the t statistic is undefined, the answer is not.
        return KeyJudgement("untested", ratio, ratio, ratio, 1.0 if ratio == 1.0 else 0.0, 0.0)
    result = sps.ttest_ind(lb, la, equal_var=True)
    ci = result.confidence_interval(CONFIDENCE)
    return KeyJudgement(
        "untested",
        ratio,
        math.exp(float(ci.low)),
        math.exp(float(ci.high)),
        float(result.pvalue),
        sd,
    )


def _logs(values: Sequence[float]) -> npt.NDArray[np.float64]:
    return np.log(np.asarray(values, dtype=np.float64))


# Fitting a slope costs a degree of freedom; below this many rounds in all, the estimate of
# the noise would rest on one or two leftover degrees and every interval would be useless.
_MIN_FIT_ROUNDS = 6


def _fit_with_reference(
    la: npt.NDArray[np.float64],
    lb: npt.NDArray[np.float64],
    ra: npt.NDArray[np.float64],
    rb: npt.NDArray[np.float64],
) -> KeyJudgement | None:
    """Least squares of log figure on (1, is_B, log reference); None when it cannot be fitted.

    Written out with numpy: scipy.stats has no multiple regression with inference (its
    linregress takes one predictor), and this is the textbook t-test of one coefficient
    (analysis of covariance), p-value and interval from scipy.stats.t.
    """
    if len(ra) != len(la) or len(rb) != len(lb) or min(len(la), len(lb)) < MIN_ROUNDS:
        return None
    y = np.concatenate([la, lb])
    if len(y) < _MIN_FIT_ROUNDS:
        return None
    x = np.column_stack(
        [np.ones(len(y)), np.r_[np.zeros(len(la)), np.ones(len(lb))], np.concatenate([ra, rb])]
    )
    coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    if rank < x.shape[1]:
        return None  # every round's reference the same (or in step with the side)
    dof = len(y) - x.shape[1]
    resid = y - x @ coef
    sigma2 = float(resid @ resid) / dof
    shift = float(coef[1])
    ratio = math.exp(shift)
    if sigma2 == 0.0:
        return KeyJudgement("untested", ratio, ratio, ratio, 1.0 if shift == 0.0 else 0.0, 0.0)
    se = math.sqrt(sigma2 * float(np.linalg.inv(x.T @ x)[1, 1]))
    t_crit = float(sps.t.ppf(0.5 + CONFIDENCE / 2, dof))
    p_value = float(2.0 * sps.t.sf(abs(shift) / se, dof))
    low, high = math.exp(shift - t_crit * se), math.exp(shift + t_crit * se)
    return KeyJudgement("untested", ratio, low, high, p_value, math.sqrt(sigma2))


def adjust(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (scipy.stats.false_discovery_control)."""
    if not p_values:
        return []
    adjusted = sps.false_discovery_control(np.asarray(p_values, dtype=np.float64), method="bh")
    return [float(p) for p in adjusted]


def judge_keys(
    figures_a: Mapping[K, Sequence[float]],
    figures_b: Mapping[K, Sequence[float]],
    *,
    refs_a: Mapping[K, Sequence[float]] | None = None,
    refs_b: Mapping[K, Sequence[float]] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> dict[K, KeyJudgement]:
    """Judge every key present on both sides, correcting the p-values for their number.

    Each mapping holds, per key, one figure per round (median latency); ``refs_*`` the
    matching reference-job medians, for the keys that have them (see :func:`judge_key`).
    Only keys with a p-value take part in the correction; the returned judgements carry
    the adjusted p-value.
    """
    if not threshold > 1.0 or not 0.0 < alpha < 1.0:
        raise ValueError(
            f"threshold must be > 1 and alpha in (0, 1); got threshold={threshold}, alpha={alpha}"
        )
    ra, rb = refs_a or {}, refs_b or {}
    raw = {
        k: judge_key(figures_a[k], figures_b[k], ra.get(k), rb.get(k))
        for k in figures_a
        if k in figures_b
    }
    tested = [k for k, j in raw.items() if j.p_value is not None]
    adjusted = dict(zip(tested, adjust([raw[k].p_value or 0.0 for k in tested]), strict=True))
    return {
        k: j.with_adjusted(adjusted.get(k), threshold=threshold, alpha=alpha)
        for k, j in raw.items()
    }
