"""The reliability and security suite (``lancesync-bench chaos``).

Fault sections, each against a real S3 server and the real storage service:

* kill trials (:mod:`.kill`, worker in :mod:`.worker`): SIGKILL mid-sync, mid-backup and
  mid-S3-primary-write; the remote table stays complete, nothing acknowledged is lost;
* S3 outage (:mod:`.outage`) and flaky S3 (:mod:`.flaky`) through the netem proxy;
* two racing devices (:mod:`.devices`);
* corrupted objects and S3 without conditional puts (:mod:`.integrity`);
* clock skew (:mod:`.clock_skew`), lost S3 answers (:mod:`.lost_answers`) and failing
  background pushes (:mod:`.background`);
* the bad-input catalogue (:mod:`.bad_input`) and security (:mod:`.security`).

:func:`run_suite` runs them and writes ``results/<run-id>/reliability.json``.
"""

from __future__ import annotations

from lancesync_bench.chaos.report import Check, Section
from lancesync_bench.chaos.suite import SECTIONS, SuiteOptions, SuiteOutcome, run_suite

__all__ = ["SECTIONS", "Check", "Section", "SuiteOptions", "SuiteOutcome", "run_suite"]
