"""Demo steps and figures for the notebooks, as tested package functions.

Notebook 01 (configuration, no I/O):

* :func:`matrix_frame`, :func:`plot_matrix`: the frontend x backend matrix.
* :func:`detection_frame`: which backend location each cloud indicator selects, and why.
* :func:`validation_errors_frame`, :func:`check_env`: the ConfigErrors a user meets.

Notebook 02 (results): :func:`results_for_notebook` finds the newest run or makes a quick one.

Notebook 03 (live, against an S3 server the lab starts and stops):

* :class:`DemoLab`: the server, a counting and cuttable proxy in front of it, scratch
  folders; :class:`DemoSizes` (tiny with ``LANCESYNC_NOTEBOOK_QUICK=1``).
* :func:`machine_loss_and_restore`: backup, lose the folder, restore elsewhere.
* :func:`two_devices_converge`: two devices, a conflict and a delete, sync, converge.
* :func:`s3_primary_cache`, :func:`plot_cache_reads`: cache fill, hits, staleness bound.
* :func:`s3_outage`, :func:`plot_outage`: S3 goes away and comes back.

The scenario functions are coroutines (``await`` them: notebooks allow it at top level) and
return dataclasses of pandas DataFrames.
"""

from __future__ import annotations

from lancesync_bench.demo.cache import CacheDemo, s3_primary_cache
from lancesync_bench.demo.configuration import (
    ConfigCheck,
    check_env,
    detection_frame,
    matrix_frame,
    validation_errors_frame,
)
from lancesync_bench.demo.devices import TwoDeviceDemo, two_devices_converge
from lancesync_bench.demo.figures import plot_cache_reads, plot_matrix, plot_outage
from lancesync_bench.demo.lab import QUICK_ENV, DemoLab, DemoRun, DemoSizes
from lancesync_bench.demo.latency import results_for_notebook
from lancesync_bench.demo.outage import OutageDemo, s3_outage
from lancesync_bench.demo.recovery import RestoreDemo, machine_loss_and_restore
from lancesync_bench.demo.tables import WINNER_RULE

__all__ = [
    "QUICK_ENV",
    "WINNER_RULE",
    "CacheDemo",
    "ConfigCheck",
    "DemoLab",
    "DemoRun",
    "DemoSizes",
    "OutageDemo",
    "RestoreDemo",
    "TwoDeviceDemo",
    "check_env",
    "detection_frame",
    "machine_loss_and_restore",
    "matrix_frame",
    "plot_cache_reads",
    "plot_matrix",
    "plot_outage",
    "results_for_notebook",
    "s3_outage",
    "s3_primary_cache",
    "two_devices_converge",
    "validation_errors_frame",
]
