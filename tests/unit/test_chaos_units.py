"""Unit tests of the reliability suite's pieces: request re-signing and rewriting, the
report file, ground-truth helpers, the bad-input bookkeeping, the kill-trial driver."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import importlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from lancesync_bench.chaos import SECTIONS, SuiteOptions
from lancesync_bench.chaos.catalogue import Catalogue, clear_error, shown, sync_call
from lancesync_bench.chaos.common import (
    Acked,
    content_hash,
    document,
    failure_bound_s,
    folder_snapshot,
    latency_figures,
    live_from_records,
    make_config,
    missing_acked,
    tail_ms,
)
from lancesync_bench.chaos.kill import TrialRun, _Killer, drive_trial
from lancesync_bench.chaos.report import (
    RELIABILITY_FILE,
    Section,
    envelope,
    find_secrets,
    leak_paths,
    render_summary,
    serialise,
    write_reliability,
)
from lancesync_bench.chaos.security import RequestLog
from lancesync_bench.chaos.summaries import summarise
from lancesync_bench.chaos.workload import TRANSFER_EVERY, Workload
from lancesync_bench.cli import build_parser, main
from lancesync_bench.config import Secret
from lancesync_bench.errors import ConfigError, DocumentError, UserIdError
from lancesync_bench.netem import ConditionalStripper
from lancesync_bench.netem.http import HttpTracker, RequestHead
from lancesync_bench.netem.rewrite import resign_head
from lancesync_bench.s3.endpoint import S3Endpoint

SECRET = "unit-test-secret-0123456789abcdef"
FIXED = dt.datetime(2025, 1, 2, 3, 4, 5)


def _endpoint() -> S3Endpoint:
    return S3Endpoint(
        url="http://127.0.0.1:9",
        region="us-east-1",
        access_key_id="AKUNIT",
        secret_access_key=Secret(SECRET),
        bucket="bkt",
        prefix="p",
    )


# -- SigV4 re-signing ----------------------------------------------------------------------


def _signed_head(monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]) -> bytes:
    """A request head exactly as botocore signs it, at a fixed time."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: FIXED)
    body = b"hello"
    url = "http://127.0.0.1:9000/bkt/some%20dir/key.manifest?x-id=PutObject&a=b%2Fc"
    request = AWSRequest(
        "PUT",
        url,
        data=body,
        headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(), **headers},
    )
    botocore.auth.S3SigV4Auth(Credentials("AKUNIT", SECRET), "s3", "us-east-1").add_auth(request)
    lines = ["PUT /bkt/some%20dir/key.manifest?x-id=PutObject&a=b%2Fc HTTP/1.1"]
    lines += ["Host: 127.0.0.1:9000", "Content-Length: 5"]
    lines += [
        f"{k}: {v.decode() if isinstance(v, bytes) else v}" for k, v in request.headers.items()
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _auth(raw: bytes) -> str:
    for line in raw.decode().split("\r\n"):
        if line.lower().startswith("authorization:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Authorization header")


def test_resigning_an_unchanged_head_reproduces_botocores_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = _signed_head(monkeypatch, {"If-None-Match": "*"})
    again = resign_head(raw, SECRET)
    assert again is not None
    assert _auth(again) == _auth(raw)


def test_stripping_if_none_match_signs_like_botocore_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_condition = _signed_head(monkeypatch, {"If-None-Match": "*"})
    without = _signed_head(monkeypatch, {})
    stripped = resign_head(with_condition, SECRET, drop=frozenset({"if-none-match"}))
    assert stripped is not None
    assert b"if-none-match" not in stripped.lower()
    assert _auth(stripped) == _auth(without)
    assert "if-none-match" in _auth(with_condition)


def test_heads_that_cannot_be_resigned_are_left_alone() -> None:
    unsigned = b"PUT /b/k HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\n\r\n"
    assert resign_head(unsigned, SECRET, drop=frozenset({"if-none-match"})) is None
    streaming = (
        b"PUT /b/k HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\nX-Amz-Date: 20250101T000000Z\r\n"
        b"X-Amz-Content-SHA256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD\r\nAuthorization: "
        b"AWS4-HMAC-SHA256 Credential=A/20250101/us-east-1/s3/aws4_request, "
        b"SignedHeaders=host;if-none-match;x-amz-content-sha256;x-amz-date, Signature=ab\r\n\r\n"
    )
    stripper = ConditionalStripper(Secret(SECRET))
    head = RequestHead("PUT", "/b/k", {"if-none-match": "*"})
    assert stripper(head, streaming) == streaming
    assert (stripper.stripped, stripper.unchanged) == (0, 1)
    assert SECRET not in repr(stripper)


def test_stripper_passes_requests_without_the_condition_untouched() -> None:
    stripper = ConditionalStripper(Secret(SECRET))
    raw = b"GET /b/k HTTP/1.1\r\nHost: h\r\n\r\n"
    assert stripper(RequestHead("GET", "/b/k", {"host": "h"}), raw) is raw
    assert (stripper.stripped, stripper.unchanged) == (0, 0)


# -- rewriting a request stream ------------------------------------------------------------


def _upper_target(head: RequestHead, raw: bytes) -> bytes:
    return raw.replace(head.target.encode(), head.target.upper().encode(), 1)


_STREAM = (
    b"PUT /b/one HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde"
    b"\r\nPOST /b/two HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    b"GET /b/three HTTP/1.1\r\nHost: h\r\n\r\n"
)
_EXPECTED = _STREAM.replace(b"/b/one", b"/B/ONE").replace(b"/b/two", b"/B/TWO")
_EXPECTED = _EXPECTED.replace(b"/b/three", b"/B/THREE")


@pytest.mark.parametrize("split", [1, 2, 3, 7, 16, 64, len(_STREAM)])
def test_rewrite_replaces_each_head_and_passes_bodies_whatever_the_chunking(split: int) -> None:
    tracker = HttpTracker(_upper_target)
    out = b""
    heads = []
    for start in range(0, len(_STREAM), split):
        found, forward = tracker.rewrite_request(_STREAM[start : start + split])
        out += forward
        heads += [p.head.target for p in found]
    assert out == _EXPECTED
    assert heads == ["/b/one", "/b/two", "/b/three"]


def test_rewrite_skips_a_body_the_client_never_sends_after_a_final_answer() -> None:
    tracker = HttpTracker(_upper_target)
    first = b"PUT /b/k HTTP/1.1\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
    _, out = tracker.rewrite_request(first)
    assert b"/B/K" in out
    tracker.feed_response(b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n")
    _, out = tracker.rewrite_request(b"GET /b/next HTTP/1.1\r\n\r\n")
    assert out == b"GET /B/NEXT HTTP/1.1\r\n\r\n"


def test_a_stream_that_is_not_http_passes_unchanged() -> None:
    tracker = HttpTracker(_upper_target)
    junk = b"\x16\x03\x01 not http at all\r\n\r\nmore"
    _, out = tracker.rewrite_request(junk)
    _, tail = tracker.rewrite_request(b"after")
    assert out + tail == junk + b"after"


# -- the report ------------------------------------------------------------------------------


def test_section_passes_only_with_checks_and_all_of_them_holding() -> None:
    section = Section("s", "S")
    assert not section.passed
    assert section.check("one", True, "fine")
    assert section.passed
    assert not section.check("two", False, "x" * 1000)
    assert not section.passed
    assert len(section.checks[1].detail) <= 400


def test_find_secrets_sees_raw_json_and_repr_forms() -> None:
    tricky = 'se"cr\\et'
    assert find_secrets(f"..{tricky}..", [tricky])
    assert find_secrets(json.dumps({"k": tricky}), [tricky])
    assert find_secrets(repr(tricky), [tricky])
    assert not find_secrets("nothing here", [tricky, ""])


def test_serialise_masks_secrets_redacts_keys_and_leak_paths_say_where() -> None:
    doc = {"a": [{"msg": f"oops {SECRET}"}], "aws_secret_access_key": "plain", "ok": 1}
    assert leak_paths(doc, [SECRET]) == ["$.a[0].msg"]
    text = serialise(doc, [SECRET])
    assert SECRET not in text and "plain" not in text
    assert json.loads(text)["ok"] == 1


def test_reliability_file_is_written_atomically_and_complete(tmp_path: Path) -> None:
    section = Section("kill", "Kill")
    section.check("c", True, "d")
    section.figure(trials=3)
    doc = envelope(run_id="r1", quick=True, seed=0, metadata={}, sections=[section])
    path = write_reliability(tmp_path / "r1", serialise(doc, [SECRET]))
    assert path.name == RELIABILITY_FILE
    loaded = json.loads(path.read_text())
    assert loaded["schema_version"] == 1 and loaded["passed"] is True
    assert loaded["sections"]["kill"]["figures"] == {"trials": 3}
    assert sorted(p.name for p in path.parent.iterdir()) == [RELIABILITY_FILE]


def test_summary_lists_every_check_and_spells_out_failures() -> None:
    a, b = Section("a", "A"), Section("b", "B")
    a.check("holds", True)
    b.check("breaks", False, "because")
    b.summary = "1 thing"
    table = render_summary([a, b])
    assert "holds" in table and "PASS" in table
    assert "FAIL b: breaks: because" in table
    assert "b: 1 thing" in table


def test_summaries_tolerate_a_section_that_failed_before_its_figures() -> None:
    section = Section("kill", "Kill")
    summarise(section)
    assert section.summary == ""
    section.figure(trials=2, complete=2, rows_lost=0, acknowledged_writes=9, killed_mid_operation=1)
    summarise(section)
    assert "2 trials" in section.summary and "0 of 9" in section.summary


# -- ground truth ----------------------------------------------------------------------------


def _rec(
    doc_id: str, ts: int, origin: str, *, deleted: bool = False, seq: int = 0
) -> dict[str, Any]:
    return {
        "id": doc_id,
        "text": f"{doc_id}@{ts}",
        "vector": [0.5, 0.25],
        "metadata": json.dumps({"seq": seq}),
        "updated_at": ts,
        "origin": origin,
        "deleted": deleted,
    }


def test_live_records_follow_last_writer_wins_with_origin_tie_break_and_tombstones() -> None:
    rows = [
        _rec("a", 1, "x", seq=1),
        _rec("a", 2, "x", seq=2),
        _rec("b", 5, "x"),
        _rec("b", 5, "y"),  # same time: the greater origin wins
        _rec("c", 1, "x"),
        _rec("c", 3, "y", deleted=True),
    ]
    live = live_from_records(rows)
    assert sorted(live) == ["a", "b"]
    assert live["a"]["metadata"]["seq"] == 2
    assert live["b"]["origin"] == "y"
    assert content_hash(live) == content_hash(live_from_records(list(reversed(rows))))


def test_missing_acked_accepts_later_writes_and_flags_older_or_absent_ones() -> None:
    acked = Acked.empty()
    acked.add("a", 2)
    acked.add("a", 1)  # an older ack never lowers the bar
    acked.add("b", 5)
    acked.add("c", 1)
    live = live_from_records([_rec("a", 9, "x", seq=3), _rec("b", 9, "x", seq=4)])
    assert acked.seqs["a"] == 2
    assert missing_acked(live, acked) == ["b", "c"]


def test_documents_are_seeded_and_carry_their_sequence() -> None:
    assert document("x", 3) == document("x", 3)
    assert document("x", 3)["vector"] != document("x", 4)["vector"]
    assert document("x", 3, writer="w")["metadata"] == {"seq": 3, "writer": "w"}


def test_latency_figures_refuse_percentiles_n_cannot_support() -> None:
    few = latency_figures([1_000_000] * 5)
    assert few["n"] == 5 and few["p99_ms"] is None and few["max_ms"] == 1.0
    assert tail_ms(few) == 1.0
    many = latency_figures(list(range(1, 201)))
    assert many["p99_ms"] is not None and tail_ms(many) == many["p99_ms"]


def test_failure_bound_grows_with_timeouts_and_retries(tmp_path: Path) -> None:
    ep = _endpoint()
    fast = make_config("local_primary_s3_sync", tmp_path, ep, device="d", S3_MAX_RETRIES="0")
    slow = make_config("local_primary_s3_sync", tmp_path, ep, device="d", S3_MAX_RETRIES="2")
    # 1 attempt of (1 + 5) s + 3 s slack; 3 attempts + backoff 1 + 2 s + slack.
    assert failure_bound_s(fast) == pytest.approx(9.0)
    assert failure_bound_s(slow) == pytest.approx(3 * 6 + 3 + 3)


def test_folder_snapshot_sees_new_and_changed_files(tmp_path: Path) -> None:
    assert folder_snapshot(tmp_path / "absent") == {}
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("1")
    before = folder_snapshot(tmp_path)
    (tmp_path / "d" / "f").write_text("22")
    assert folder_snapshot(tmp_path) != before


# -- the bad-input bookkeeping -------------------------------------------------------------


def test_catalogue_case_passes_only_for_the_expected_clear_error_and_no_change() -> None:
    catalogue = Catalogue()
    state = {"n": 0}

    def raise_(exc: Exception) -> None:
        raise exc

    async def scenario() -> None:
        watch = lambda: dict(state)  # noqa: E731 - a tiny snapshot
        good = sync_call(lambda: raise_(UserIdError("user id '../x' is not allowed")))
        await catalogue.case(
            category="c", name="ok", shown="x", action=good, expect=UserIdError, watch=watch
        )
        wrong = sync_call(lambda: raise_(ValueError("a plain ValueError")))
        await catalogue.case(
            category="c", name="type", shown="x", action=wrong, expect=UserIdError, watch=watch
        )
        multi = sync_call(lambda: raise_(DocumentError("line one\nline two")))
        await catalogue.case(
            category="c", name="lines", shown="x", action=multi, expect=DocumentError, watch=watch
        )

        def write_then_raise() -> None:
            state["n"] += 1
            raise ConfigError("refused, but too late")

        await catalogue.case(
            category="c",
            name="wrote",
            shown="x",
            action=sync_call(write_then_raise),
            expect=ConfigError,
            watch=watch,
        )
        await catalogue.case(
            category="c",
            name="silent",
            shown="x",
            action=sync_call(lambda: None),
            expect=ConfigError,
            watch=watch,
        )

    asyncio.run(scenario())
    verdicts = {c["case"]: c["passed"] for c in catalogue.cases}
    assert verdicts == {"ok": True, "type": False, "lines": False, "wrote": False, "silent": False}
    assert catalogue.cases[3]["nothing_written"] is False
    assert catalogue.cases[4]["error_type"] is None
    assert list(catalogue.by_category()) == ["c"]


def test_shown_inputs_are_short_and_say_how_long_they_were() -> None:
    assert shown("a" * 10_240).endswith("(10240 long)")
    assert len(shown("a" * 10_240)) < 100
    assert shown(42) == "42"
    assert not clear_error(None, ValueError)


# -- the kill-trial driver -----------------------------------------------------------------


class _FakeServer:
    """Feeds scripted worker lines to the driver."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.live_pid: int | None = None
        self.sent: list[dict[str, Any]] = []

    def send(self, request: dict[str, Any]) -> None:
        self.sent.append(request)

    def line(self, timeout_s: float) -> str | None:
        return self.lines.pop(0) if self.lines else None


def test_driver_kills_after_enough_acks_inside_the_next_operation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append((pid, sig)))
    now = __import__("time").monotonic_ns()
    far = now + 60 * 10**9  # a begin stamped in the future: never "too late"
    lines = [
        "T7 pid 4242",
        "T7 begin sync 1",
        "T7 done sync 900.0",  # the first transfer: not a typical duration
        "T7 ready",
        "T7 ack w1:11 w2:12",
        "T7 begin sync 2",  # stamped long ago: its kill moment passed, skipped
        "T7 done sync 10.0",
        "T7 ack w3:13",
        f"T7 begin sync {far}",
        "T7 ack w4:14",  # printed before the signal landed: acknowledged all the same
        "T7 exit -9",
    ]
    monkeypatch.setattr("time.sleep", lambda s: None)
    server = _FakeServer(lines)
    run = drive_trial(server, {"trial": 7}, acks=1, fraction=0.5)  # type: ignore[arg-type]
    assert killed == [(4242, signal.SIGKILL)]
    assert run.killed and run.killed_mid_op and run.exit_code == -9
    assert run.acked == [("w1", 11), ("w2", 12), ("w3", 13), ("w4", 14)]
    assert run.op_ms == [10.0] and run.kill_delay_ms == 5.0
    assert server.live_pid is None


def test_driver_notes_when_the_operation_finished_before_the_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "kill", lambda pid, sig: None)
    monkeypatch.setattr("time.sleep", lambda s: None)
    killer = _Killer(_FakeServer([]), acks=0, fraction=0.1)  # type: ignore[arg-type]
    far = __import__("time").monotonic_ns() + 60 * 10**9
    for word, rest in (("pid", "1"), ("begin", f"backup {far}"), ("done", "backup 5.0")):
        killer.on_event(word, rest)
    assert killer.run.killed and not killer.run.killed_mid_op
    assert killer.on_event("exit", "-9")


def test_driver_reports_a_silent_worker() -> None:
    run = drive_trial(_FakeServer([]), {"trial": 1}, acks=1, fraction=0.5)  # type: ignore[arg-type]
    assert isinstance(run, TrialRun) and run.problem and not run.killed


# -- workload, sections, CLI -----------------------------------------------------------------


def test_workload_schedules_a_transfer_every_tenth_operation() -> None:
    workload = Workload(None, "u", seed=1, mode="local_primary_s3_sync")  # type: ignore[arg-type]
    kinds = [workload.next_kind(i) for i in range(40)]
    assert [i for i, k in enumerate(kinds) if k == "transfer"] == [
        i for i in range(40) if i % TRANSFER_EVERY == TRANSFER_EVERY - 1
    ]
    assert kinds[0] == "write"  # nothing acknowledged yet: nothing to read


def test_request_log_records_keys_listing_prefixes_and_foreign_buckets() -> None:
    log = RequestLog("bkt")
    raw = b"x"
    assert log(RequestHead("GET", "/bkt/p/users/a/x.lance", {}), raw) is raw
    log(RequestHead("GET", "/bkt?list-type=2&prefix=p%2Fusers%2Fa%2F", {}), raw)
    log(RequestHead("GET", "/other/k", {}), raw)
    assert log.take() == ["p/users/a/x.lance", "p/users/a/", "<bucket 'other'>"]
    assert log.take() == []


def test_suite_options_keep_the_suite_order_and_refuse_unknown_sections() -> None:
    assert SuiteOptions().sections() == list(SECTIONS)
    assert SuiteOptions(only=["security", "kill"]).sections() == ["kill", "security"]
    with pytest.raises(ConfigError, match="not known"):
        SuiteOptions(only=["nope"]).sections()


def test_each_section_is_a_module_named_as_it_and_the_suite_takes_its_title() -> None:
    from lancesync_bench.chaos import suite

    table = suite._sections()
    assert tuple(table) == SECTIONS
    for name in SECTIONS:
        module = importlib.import_module(f"lancesync_bench.chaos.{name}")
        assert name == module.NAME
        assert table[name][0] == module.TITLE
    assert table["kill"][1] is None  # run with the worker server by _run_all


def test_chaos_command_parses_its_options_and_rejects_unknown_sections(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(["chaos", "--quick", "--out", "x", "--only", "kill"])
    assert (args.quick, args.out, args.only, args.s3) == (True, Path("x"), ["kill"], "auto")
    with pytest.raises(SystemExit) as exc:
        main(["chaos", "--only", "nope"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_the_suite_says_which_section_runs_and_how_it_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`chaos` printed nothing for ~40 s; now one line as each section starts and ends."""
    from lancesync_bench.chaos import suite
    from lancesync_bench.chaos.context import QUICK, SuiteContext
    from lancesync_bench.config import Secret
    from lancesync_bench.s3.endpoint import S3Endpoint

    async def passes(ctx: SuiteContext, section: Section) -> None:
        section.check("holds", True, "")
        section.check("also holds", True, "")

    async def fails(ctx: SuiteContext, section: Section) -> None:
        section.check("holds", False, "broken")

    table = {"integrity": ("Corrupted objects", passes), "flaky": ("Flaky S3", fails)}
    monkeypatch.setattr(suite, "_sections", lambda: table)
    endpoint = S3Endpoint(
        url="http://127.0.0.1:9",
        region="us-east-1",
        access_key_id="AKIAEXAMPLE",
        secret_access_key=Secret("x" * 30),
        bucket="bench",
    )
    ctx = SuiteContext(endpoint=endpoint, workdir=tmp_path, quick=True, seed=0, scale=QUICK)
    asyncio.run(suite._run_all(ctx, ["integrity", "flaky"], progress=True))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "chaos: [1/2] integrity: Corrupted objects ..."
    assert lines[1].startswith("chaos: [1/2] integrity: 2 of 2 checks passed (")
    assert lines[2] == "chaos: [2/2] flaky: Flaky S3 ..."
    assert lines[3].startswith("chaos: [2/2] flaky: 0 of 1 checks passed (")
    asyncio.run(suite._run_all(ctx, ["integrity"], progress=False))
    assert capsys.readouterr().err == ""
