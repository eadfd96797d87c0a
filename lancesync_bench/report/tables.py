"""Tables of a run: verdicts (as a figure too), statistics with S3 traffic, baseline ratios.

The frames here feed both the HTML page and the figures, so the page and the PNGs can
never disagree about a number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from lancesync_bench.report.data import (
    BASELINE_PREFIX,
    SERVICE,
    ReportData,
    operation_sort_key,
)
from lancesync_bench.report.style import STATUS_COLORS, new_figure
from lancesync_bench.stats import SLOWED

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "MACHINE_LEGEND",
    "STATUS_ORDER",
    "baseline_ratios",
    "machine_noise_text",
    "stats_table",
    "verdict_counts",
    "verdict_figure",
    "verdict_summary",
    "verdict_table",
]

# Failures first: the row a reader must see is the top one.
STATUS_ORDER = ("FAIL", "UNSURE", "PASS", "BELOW", "N/A")
_VERDICT_COLUMNS = (
    "scenario",
    "profile",
    "size",
    "operation",
    "target",
    "criterion",
    "value",
    "interval",
    "source",
    "status",
    "slowed",
    "steady_value",
    "steady_status",
    "note",
)
# What the machine-noise columns beside a verdict mean, for the page's legend.
MACHINE_LEGEND = (
    "slowed: samples taken while the CPU ran at half speed or worse (machine_slowdown >= "
    f"{SLOWED:g}), of all samples judged. steady: the judged statistic of the other samples; "
    "steady verdict (for a FAIL at p95/p99 only) says whether they alone meet the target. "
    "The verdict is always judged on all samples."
)


def _fmt_ms(value: object) -> str:
    """Milliseconds with two decimals; "-" for a missing figure (None or NaN)."""
    number = float(value) if isinstance(value, int | float) else math.nan
    return "-" if math.isnan(number) else f"{number:.2f}"


def _missing(value: object) -> bool:
    """None, NaN or pandas' NA: a figure the run does not have."""
    import pandas as pd

    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _count(value: object) -> int | None:
    """A count from a column that may hold floats (NaN beside it) or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return int(value)


def _slowed_text(slowed: object, n: object) -> str:
    """``7/100``: slowed samples of all judged; "-" when not recorded (an older run)."""
    a, b = _count(slowed), _count(n)
    return "-" if a is None or b is None else f"{a}/{b}"


def _column(frame: pd.DataFrame, name: str) -> list[object]:
    """A column's values, or Nones when the frame lacks it (a frame built by hand)."""
    return frame[name].tolist() if name in frame.columns else [None] * len(frame)


def _profile_rank(data: ReportData, profiles: Iterable[object]) -> list[int]:
    """Each profile's position from the fastest network (loopback) to the slowest."""
    order = data.profiles()
    return [order.index(str(p)) if str(p) in order else len(order) for p in profiles]


def _value_text(unit: object, value: object, value_ms: object) -> str:
    """The judged figure: ms with two decimals, recall with three; "-" when missing."""
    if unit == "recall":
        return "-" if _missing(value) else f"{float(value):.3f}"  # type: ignore[arg-type]
    return _fmt_ms(value_ms)


def _interval_text(unit: object, low: object, high: object, status: object) -> str:
    """``3.90-5.10`` (ms or recall); "n too small" for an UNSURE without one; else "-"."""
    if _missing(low) or _missing(high):
        return "n too small" if status == "UNSURE" else "-"
    digits = 3 if unit == "recall" else 2
    return f"{float(low):.{digits}f}-{float(high):.{digits}f}"  # type: ignore[arg-type]


def _source_text(source: object) -> str:
    """``default`` or the scenario file's name that set the target ("-": an older run)."""
    return "-" if _missing(source) else Path(str(source)).name


def verdict_table(data: ReportData) -> pd.DataFrame:
    """The verdict rows, failures first, with ``value`` as text in ms ("-" for N/A).

    Recall rows give recall@10 (three decimals) in ``value``; ``interval`` is the 95%
    confidence interval of the judged figure; ``source`` where the target came from.

    ``slowed`` is the slowed samples of all judged ("7/100"), ``steady_value`` the judged
    statistic of the steady samples (text in ms), ``steady_status`` their verdict for a
    FAIL at p95/p99; "-" where the run has none (older runs have no probe figures).
    """
    import pandas as pd

    v = data.verdicts
    if v.empty:
        return pd.DataFrame(columns=list(_VERDICT_COLUMNS))
    units = _column(v, "unit")
    out = v.assign(
        value=[
            _value_text(u, x, ms)
            for u, x, ms in zip(units, _column(v, "value"), v["value_ms"], strict=True)
        ],
        interval=[
            _interval_text(u, lo, hi, st)
            for u, lo, hi, st in zip(
                units, _column(v, "ci_low"), _column(v, "ci_high"), v["status"], strict=True
            )
        ],
        source=[_source_text(x) for x in _column(v, "target_source")],
        slowed=[
            _slowed_text(a, b) for a, b in zip(_column(v, "slowed_n"), _column(v, "n"), strict=True)
        ],
        steady_value=[_fmt_ms(x) for x in _column(v, "steady_value_ms")],
        steady_status=["-" if _missing(x) else str(x) for x in _column(v, "steady_status")],
        _rank=[
            STATUS_ORDER.index(s) if s in STATUS_ORDER else len(STATUS_ORDER) for s in v["status"]
        ],
        _op=[operation_sort_key(str(o))[0] for o in v["operation"]],
        _net=_profile_rank(data, v["profile"]),
    )
    out = out.sort_values(["_rank", "scenario", "_net", "size", "_op", "operation", "target"])
    return out[list(_VERDICT_COLUMNS)].reset_index(drop=True)


def verdict_summary(data: ReportData) -> list[str]:
    """The verdict's answer: one line per storage mode (:mod:`lancesync_bench.bench.summary`)."""
    from lancesync_bench.bench.mode_summary import mode_summaries

    records = [
        {k: None if _missing(v) else v for k, v in row.items()}
        for row in data.verdicts.to_dict("records")
    ]
    for r in records:
        if r.get("unit") is None:  # a run before schema 3: no interval was computed
            r.pop("ci_low", None)
            r.pop("ci_high", None)
    return list(mode_summaries(records).values())  # type: ignore[arg-type]


def verdict_counts(data: ReportData) -> dict[str, int]:
    """How many verdicts have each status, in :data:`STATUS_ORDER` (zeros included)."""
    statuses = [str(s) for s in data.verdicts["status"]] if len(data.verdicts) else []
    return {s: statuses.count(s) for s in STATUS_ORDER}


def stats_table(data: ReportData) -> pd.DataFrame:
    """Per (scenario, profile, size, operation, path, phase): n, p50/p95/p99/max and S3 traffic.

    Latency figures come from the run's own ``stats`` rows (a percentile n cannot support
    stays empty), with the machine-noise figures (slowed samples, steady p95/p99; empty for
    runs without them); requests and bytes are medians over the samples.
    """
    import pandas as pd

    keys = ["scenario", "profile", "size", "operation", "path", "phase"]
    st = data.stats
    st = st[st["phase"] != "warmup"] if len(st) else st
    noise = ["slowed_n", "steady_p95_ms", "steady_p99_ms"]
    cols = [*keys, "n", "p50_ms", "p95_ms", "p99_ms", "max_ms", *noise, "requests", "kib"]
    if st.empty:
        return pd.DataFrame(columns=cols)
    st = st.assign(**{c: pd.to_numeric(pd.Series(_column(st, c), index=st.index)) for c in noise})
    st = st.astype({"slowed_n": "Int64"})  # a count: shown as 7, not 7.00
    s = data.samples[data.samples["phase"] != "warmup"]
    traffic = (
        s.groupby(keys, observed=True)[["requests", "bytes"]]
        .median()
        .reset_index()
        .astype({"size": "int64"})
    )
    out = st.astype({"size": "int64"}).merge(traffic, on=keys, how="left")
    out["kib"] = out["bytes"] / 1024
    out["_op"] = [operation_sort_key(str(o))[0] for o in out["operation"]]
    out["_svc"] = out["path"] != SERVICE
    out["_net"] = _profile_rank(data, out["profile"])
    out = out.sort_values(["scenario", "_net", "size", "_svc", "path", "_op", "operation"])
    return out[cols].reset_index(drop=True)


def machine_noise_text(data: ReportData) -> str:
    """One line: the share of the run's samples taken while the CPU was slowed (>= 2x)."""
    frame = data.samples
    if "machine_slowdown" not in frame.columns:
        return "Machine noise: not measured in this run."
    probed = frame["machine_slowdown"].dropna()
    if probed.empty:
        return "Machine noise: not measured in this run (no sample carries a probe figure)."
    slowed = int((probed >= SLOWED).sum())
    return (
        f"Machine noise: {slowed} of {len(probed)} samples ({100 * slowed / len(probed):.1f} %) "
        f"were taken while the CPU ran at half speed or worse (machine_slowdown >= {SLOWED:g})."
    )


def baseline_ratios(data: ReportData) -> pd.DataFrame:
    """Service median over baseline median for every operation both measured.

    The direction of ``run``'s table and of results.json: above 1 the service is slower
    (:func:`lancesync_bench.bench.summary.ratio_words` says it in words).

    Columns: scenario, profile, size, label, baseline (name without ``baseline:``),
    service_ms, baseline_ms, ratio. Empty when no baseline shares an operation with the
    service.
    """
    import pandas as pd

    frame = data.timed(path=None)
    keys = ["scenario", "profile", "size", "label"]
    med = frame.groupby([*keys, "path"], observed=True)["latency_ms"].median().reset_index()
    svc = med[med["path"] == SERVICE].drop(columns="path")
    base = med[med["path"].str.startswith(BASELINE_PREFIX)]
    cols = [*keys, "baseline", "service_ms", "baseline_ms", "ratio"]
    if svc.empty or base.empty:
        return pd.DataFrame(columns=cols)
    both = base.merge(svc, on=keys, suffixes=("_b", "_s"))
    both = both[(both["latency_ms_s"] > 0) & (both["latency_ms_b"] > 0)]
    return pd.DataFrame(
        {
            **{k: both[k] for k in keys},
            "baseline": both["path"].str.removeprefix(BASELINE_PREFIX),
            "service_ms": both["latency_ms_s"],
            "baseline_ms": both["latency_ms_b"],
            "ratio": both["latency_ms_s"] / both["latency_ms_b"],
        },
        columns=cols,
    ).reset_index(drop=True)


def verdict_figure(data: ReportData) -> Figure | None:
    """The verdict table as a figure: one row per verdict, the status cell coloured.

    For PNG output and notebooks; the HTML page has the same table as HTML. None: the run
    holds no verdicts.
    """
    table = verdict_table(data)
    if table.empty:
        return None
    shown = table.drop(columns="note")
    shown["size"] = [f"{int(v):,}" for v in shown["size"]]
    at = list(shown.columns).index("status")
    # 14 in holds the thirteen columns at 8.5 pt and the title; a row is ~0.26 in when drawn.
    fig = new_figure(14.0, 0.26 * (len(shown) + 1) + 1.5)
    ax = fig.add_subplot()
    ax.axis("off")
    cells = shown.astype(str).to_numpy().tolist()
    colors = [
        [STATUS_COLORS.get(row[at], "white") if i == at else "white" for i in range(len(row))]
        for row in cells
    ]
    labels = {
        "value": "value (ms | recall)",
        "interval": "95% CI",
        "steady_value": "steady (ms)",
        "steady_status": "steady verdict",
    }
    drawn = ax.table(
        cellText=cells,
        colLabels=[labels.get(c, c) for c in shown.columns],
        cellColours=colors,
        colColours=["#DDDDDD"] * len(shown.columns),
        loc="upper center",
        cellLoc="left",
    )
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8.5)
    drawn.auto_set_column_width(list(range(len(shown.columns))))
    drawn.scale(1.0, 1.25)
    for (row, col), cell in drawn.get_celld().items():
        if row > 0 and col == at and cells[row - 1][at] == "FAIL":
            cell.get_text().set_fontweight("bold")  # the status word carries it, not colour alone
    counts = verdict_counts(data)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    fig.suptitle(
        f"Verdicts against the documented targets (run {data.run_id})\n{summary}. "
        "BELOW = faster than the S3 band's lower edge:\nexpected on loopback or emulated "
        "networks, not a failure. UNSURE = the 95% interval straddles the target, or n is\n"
        "too small for one. N/A = too few samples for the statistic.\n"
        "slowed = samples taken with the CPU at half speed or worse; steady = the figure "
        "without them (the verdict uses all samples).",
        fontsize=10,
    )
    return fig
