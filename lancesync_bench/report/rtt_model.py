"""The requests x RTT model, checked against what each emulated profile measured.

Model: an operation's loopback median plus its median S3 requests times the profile's
round-trip time (requests one after another, one round trip each). The model is a
reader's rule of thumb; where the measured median strays from it by more than
``MAX_DEVIATION`` the report says so, with both figures, instead of letting the drawing
imply that the rule holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from lancesync_bench.report.panels import scenario_panels

if TYPE_CHECKING:
    from lancesync_bench.report.data import ReportData

__all__ = ["MAX_DEVIATION", "model_rows"]

MAX_DEVIATION = 0.20  # measured / model - 1, either way
COLUMNS = [
    "scenario",
    "size",
    "operation",
    "profile",
    "requests",
    "measured_p50_ms",
    "model_ms",
    "deviation",
    "flagged",
]


def model_rows(data: ReportData, *, size: int | None = None) -> pd.DataFrame:
    """One row per (scenario panel, operation with S3 requests, emulated profile).

    ``deviation`` is measured / model - 1; ``flagged`` when its size exceeds
    :data:`MAX_DEVIATION`. Empty (with the columns) when the run has no emulated profile
    or no request counts.
    """
    frame = data.timed()
    frame = frame[frame["requests"].notna()]
    rtts = data.profile_rtts()
    emulated = [p for p in data.emulated_profiles() if p in set(frame["profile"])]
    local = next((p for p in data.profiles() if rtts[p] == 0), None)
    rows = []
    for scenario, chosen, f, labels in scenario_panels(frame, size):
        for label in labels:
            mine = f[f["label"] == label]
            base = mine.loc[mine["profile"] == local, "latency_ms"]
            for profile in emulated:
                here = mine[mine["profile"] == profile]
                requests = float(here["requests"].median()) if len(here) else 0.0
                if requests == 0:
                    continue  # local work only: no round trip to model
                measured = float(here["latency_ms"].median())
                model = (float(base.median()) if len(base) else 0.0) + requests * (
                    rtts[profile] or 0.0
                )
                deviation = measured / model - 1 if model > 0 else float("nan")
                rows.append(
                    {
                        "scenario": scenario,
                        "size": chosen,
                        "operation": label,
                        "profile": profile,
                        "requests": requests,
                        "measured_p50_ms": measured,
                        "model_ms": model,
                        "deviation": deviation,
                        "flagged": bool(abs(deviation) > MAX_DEVIATION),
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)
