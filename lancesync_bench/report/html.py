"""One self-contained HTML page per run: headline, verdicts, figures, statistics.

The page opens offline: the style sheet is inline, figures are base64 PNGs, and nothing
refers to another file or site. Of the S3 endpoint only the provider's name, version and
kind are shown; its address and keys are never printed.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlsplit

from lancesync_bench.report.data import ReportData
from lancesync_bench.report.rtt_model import MAX_DEVIATION, model_rows
from lancesync_bench.report.tables import (
    MACHINE_LEGEND,
    machine_noise_text,
    stats_table,
    verdict_counts,
    verdict_summary,
    verdict_table,
)

__all__ = ["ReportImage", "render_html", "s3_summary"]

# (file stem, title, PNG bytes): what the page embeds, in order.
ReportImage = tuple[str, str, bytes]
_LOCAL_HOSTS = frozenset({"localhost", "::1"})  # plus 127.0.0.0/8, tested by prefix

# Numbers already formatted as text: align them as numbers.
_NUMBER_TEXT = frozenset({"value", "steady_value", "slowed"})
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
 max-width:1400px;padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;
 border-bottom:1px solid #ccc;padding-bottom:.2rem}
.meta{color:#555;font-size:.9rem}
.warn{background:#FFF4D6;border-left:4px solid #E69F00;padding:.6rem 1rem;margin:1rem 0}
.headline{font-size:1.05rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eee;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.PASS{background:#C7EBD9} .FAIL{background:#F6C6AD;font-weight:bold}
.BELOW{background:#CFE8F7} .NA{background:#E6E6E6} .UNSURE{background:#FBE7A6}
.badge{display:inline-block;padding:.15rem .6rem;margin-right:.4rem;border-radius:.8rem}
figure{margin:1.5rem 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9rem}
nav a{margin-right:1rem}
"""


def _is_local(url: object) -> bool:
    if not isinstance(url, str) or not url:
        return False
    host = urlsplit(url).hostname or ""
    return host in _LOCAL_HOSTS or host.startswith("127.")


def s3_summary(metadata: Mapping[str, Any]) -> tuple[str, bool]:
    """The S3 server as shown to a reader ("seaweedfs-embedded 4.48 (embedded)"), and
    whether it ran on this machine. Never the endpoint address or credentials."""
    s3 = metadata.get("s3")
    if not isinstance(s3, Mapping):
        return "not recorded", False
    name = " ".join(str(s3[k]) for k in ("provider", "provider_version") if s3.get(k))
    kind = s3.get("kind")
    text = f"{name or 'unknown provider'}" + (f" ({kind})" if kind else "")
    local = _is_local(s3.get("url")) or kind in ("embedded", "minio")
    return text, local


def _profiles_text(data: ReportData) -> str:
    rtts = data.profile_rtts()
    parts = []
    for p in data.profiles():
        rtt = rtts[p]
        kind = "unknown RTT" if rtt is None else "no added delay" if rtt == 0 else "emulated"
        parts.append(f"{p} ({'' if rtt is None else f'RTT {rtt:g} ms, '}{kind})")
    return ", ".join(parts) or "none"


def _cell(value: object, column: str) -> str:
    """One table cell: numbers right-aligned, missing values as "-", text escaped."""
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return '<td class="num">-</td>'
    if column in _NUMBER_TEXT:
        return f'<td class="num">{escape(str(value))}</td>'
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"<td>{escape(str(value))}</td>"
    if isinstance(value, int):
        text = f"{value:,}"
    elif column == "requests":  # a median of counts: 4 or 4.5, never 4.00
        text = f"{value:g}"
    else:
        text = f"{value:,.2f}"
    return f'<td class="num">{escape(text)}</td>'


def _table(
    rows: Iterable[Mapping[Any, Any]],
    columns: Sequence[str],
    headers: Mapping[str, str],
    status: str | None = None,
) -> str:
    head = "".join(f"<th>{escape(headers.get(c, c))}</th>" for c in columns)
    body = []
    for row in rows:
        cls = ""
        if status is not None:
            cls = f' class="{escape(str(row[status]).replace("/", ""))}"'
        cells = "".join(_cell(_plain(row[c]), c) for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _plain(value: Any) -> Any:
    """A NumPy/pandas scalar as a Python one (``item()``), so formatting sees int vs float."""
    return value.item() if hasattr(value, "item") else value


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _headline(data: ReportData) -> str:
    meta = data.metadata
    server, local = s3_summary(meta)
    where = (
        "The S3 server ran on this machine; emulated profiles add round-trip time through a "
        "local delay proxy."
        if local
        else "The S3 endpoint was external; emulated profiles add round-trip time on top of "
        "the real network to it."
    )
    commit = str(meta.get("git_commit") or "")[:12] or "unknown"
    dirty = " (uncommitted changes)" if meta.get("git_dirty") else ""
    versions, cpu = _mapping(meta.get("versions")), _mapping(meta.get("cpu"))
    return (
        f'<p class="headline"><b>S3 server:</b> {escape(server)} &middot; '
        f"<b>network profiles:</b> {escape(_profiles_text(data))}</p>"
        f'<div class="warn"><b>Loopback and emulated S3 are not cloud S3.</b> {escape(where)} '
        "The documented 50-200 ms S3 band describes cloud object storage over a real network; "
        "a figure BELOW it here says the service adds little of its own, not that cloud S3 "
        "will be this fast.</div>"
        f'<p class="meta">created {escape(str(data.envelope.get("created_at", "?")))} &middot; '
        f"commit {escape(commit)}{escape(dirty)} &middot; "
        f"lancedb {escape(str(versions.get('lancedb') or '?'))} &middot; "
        f"{escape(str(meta.get('python') or ''))} &middot; "
        f"{escape(str(cpu.get('usable') or '?'))} CPU(s) {escape(str(cpu.get('model') or ''))}"
        f"{' &middot; quick run' if meta.get('quick') else ''}</p>"
    )


def _figures(images: Sequence[ReportImage]) -> str:
    out = []
    for stem, title, png in images:
        encoded = base64.b64encode(png).decode("ascii")
        out.append(
            f'<figure id="fig-{escape(stem)}"><img alt="{escape(title)}" '
            f'src="data:image/png;base64,{encoded}"><figcaption>{escape(title)}</figcaption>'
            "</figure>"
        )
    return "".join(out) or "<p>No figures (nothing to draw in this run).</p>"


def _model_check(data: ReportData) -> str:
    """The requests x RTT model against every emulated profile: the operations it misses
    by more than the limit, listed; else one line saying it held."""
    rows = model_rows(data)
    if rows.empty:
        return ""
    limit = f"{100 * MAX_DEVIATION:.0f}%"
    head = '<h3 id="model">Requests \N{MULTIPLICATION SIGN} RTT model check</h3>'
    flagged = rows[rows["flagged"]].copy()
    if flagged.empty:
        return (
            f"{head}<p>Every measured p50 is within {limit} of loopback p50 + requests "
            f"\N{MULTIPLICATION SIGN} RTT ({len(rows)} operation-profile pairs).</p>"
        )
    flagged["deviation"] = [f"{100 * d:+.0f}%" for d in flagged["deviation"]]
    columns = [c for c in flagged.columns if c != "flagged"]
    headers = {"measured_p50_ms": "measured p50 (ms)", "model_ms": "model (ms)"}
    return (
        f"{head}<p><b>{len(flagged)} of {len(rows)}</b> operation-profile pairs are more than "
        f"{limit} off the model (loopback p50 + median requests \N{MULTIPLICATION SIGN} RTT): "
        "there, requests overlap (fewer round trips than requests), or the server's or the "
        "service's own work grows with the delay. Read their measured figures, not the "
        f"model.</p>{_table(flagged.to_dict('records'), columns, headers)}"
    )


def render_html(data: ReportData, images: Sequence[ReportImage] = ()) -> str:
    """The report page for ``data`` with ``images`` embedded, as one HTML string."""
    counts = verdict_counts(data)
    badges = "".join(
        f'<span class="badge {s.replace("/", "")}">{n} {escape(s)}</span>'
        for s, n in counts.items()
    )
    verdicts = verdict_table(data)
    stats = stats_table(data)
    verdict_html = (
        _table(
            verdicts.to_dict("records"),
            list(verdicts.columns),
            {
                "value": "value (ms)",
                "steady_value": "steady (ms)",
                "steady_status": "steady verdict",
            },
            status="status",
        )
        if len(verdicts)
        else "<p>No verdicts in this run.</p>"
    )
    headers = {
        "p50_ms": "p50 ms",
        "p95_ms": "p95 ms",
        "p99_ms": "p99 ms",
        "max_ms": "max ms",
        "slowed_n": "slowed",
        "steady_p95_ms": "steady p95 ms",
        "steady_p99_ms": "steady p99 ms",
        "requests": "S3 requests (median)",
        "kib": "KiB moved (median)",
    }
    stats_html = (
        _table(stats.to_dict("records"), list(stats.columns), headers)
        if len(stats)
        else "<p>No statistics in this run.</p>"
    )
    title = f"lancesync-bench report: run {data.run_id}"
    model_html = _model_check(data)
    summary_html = "".join(f"<p><b>{escape(line)}</b></p>" for line in verdict_summary(data))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>{_headline(data)}"
        '<nav><a href="#verdicts">Verdicts</a><a href="#figures">Figures</a>'
        '<a href="#stats">Statistics</a></nav>'
        f'<h2 id="verdicts">Verdicts against the documented targets</h2><p>{badges}</p>'
        f"{summary_html}"
        "<p>Local targets are judged at p95 (p99 where the target says so), the S3 band at "
        "p50 and at p95 (a figure inside it on loopback is BELOW: no network was in it), "
        "each with a 95% interval: PASS or FAIL only when the whole interval is on one "
        "side of the target, UNSURE when it straddles it or n is too small for one (p95 "
        "needs 72 samples, p99 368). recall@10 rows sit beside every vector search. "
        "N/A: too few samples for the statistic.</p>"
        f"<p>{escape(machine_noise_text(data))} {escape(MACHINE_LEGEND)}</p>"
        f'{verdict_html}<h2 id="figures">Figures</h2>{_figures(images)}{model_html}'
        '<h2 id="stats">Statistics (cold and warm phases; warm-up excluded)</h2>'
        "<p>A percentile that n cannot support is shown as -.</p>"
        f"{stats_html}</body></html>\n"
    )
