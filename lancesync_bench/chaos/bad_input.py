"""The bad-input catalogue: each input, the error it got, and proof nothing was written.

Categories: configuration values, user ids, documents (:mod:`.bad_documents`), S3
credentials and a missing bucket (:mod:`.bad_s3`), and malformed scenario files. Every case
is recorded in the section's ``cases``: input, expected and actual error type, message, and
whether the watched folders and listings were unchanged.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from lancesync_bench.bench.env_scenario import MODE_VARIABLES
from lancesync_bench.chaos.bad_documents import document_cases
from lancesync_bench.chaos.bad_s3 import s3_cases
from lancesync_bench.chaos.catalogue import Catalogue, shown, sync_call
from lancesync_bench.chaos.common import (
    SYNC,
    document,
    folder_snapshot,
    mode_env,
    open_service,
    s3_listing,
)
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.chaos.report import Section
from lancesync_bench.config import LanceDBSyncConfig
from lancesync_bench.errors import ConfigError, UserIdError
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["run_bad_input"]

NAME = "bad_input"
TITLE = "Bad input: clear errors, nothing written"

_CONFIG_CASES: list[tuple[str, dict[str, str | None]]] = [
    ("FRONTEND_TYPE missing", {"FRONTEND_TYPE": None}),
    ("FRONTEND_TYPE not allowed", {"FRONTEND_TYPE": "mobile"}),
    ("BACKEND_LOCATION not allowed", {"BACKEND_LOCATION": "mars"}),
    ("boolean flag unparseable", {"S3_STORAGE_ENABLED": "maybe"}),
    ("EMBEDDING_DIM zero", {"EMBEDDING_DIM": "0"}),
    ("EMBEDDING_DIM not a number", {"EMBEDDING_DIM": "384d"}),
    ("EMBEDDING_DIM too large", {"EMBEDDING_DIM": "99999999"}),
    ("CACHE_MAX_STALENESS_MS negative", {"CACHE_MAX_STALENESS_MS": "-5"}),
    ("SYNC_INTERVAL_S NaN", {"SYNC_INTERVAL_S": "nan"}),
    ("S3_CONNECT_TIMEOUT_S zero", {"S3_CONNECT_TIMEOUT_S": "0"}),
    ("S3_MAX_RETRIES fractional", {"S3_MAX_RETRIES": "1.5"}),
    ("S3_BUCKET invalid name", {"S3_BUCKET": "Bad_Bucket!"}),
    ("S3_BUCKET missing in an S3 mode", {"S3_BUCKET": None}),
    ("S3_ENDPOINT_URL wrong scheme", {"S3_ENDPOINT_URL": "ftp://127.0.0.1:9000"}),
    ("S3_ENDPOINT_URL bad port", {"S3_ENDPOINT_URL": "http://127.0.0.1:99999"}),
    ("S3_PREFIX escapes with ..", {"S3_PREFIX": "apps/../../other"}),
    ("DEVICE_ID with a separator", {"DEVICE_ID": "dev/../x"}),
    ("LOCAL_STORAGE_PATH with NUL", {"LOCAL_STORAGE_PATH": "relative/x\x00y"}),
    ("desktop with S3 as primary", {"FRONTEND_TYPE": "desktop", "USE_S3_AS_PRIMARY": "true"}),
    ("local backend, S3 as primary", {"BACKEND_LOCATION": "local", "USE_S3_AS_PRIMARY": "true"}),
    ("cloud backend with S3 off", {"BACKEND_LOCATION": "cloud", "S3_STORAGE_ENABLED": "false"}),
    ("cache off outside S3-primary", {"LOCAL_CACHE_ENABLED": "false"}),
]

_BAD_USERS: list[tuple[str, object]] = [
    ("path traversal", "../escape"),
    ("deep traversal", "../../../../etc/passwd"),
    ("slash separator", "alice/bob"),
    ("backslash separator", "alice\\bob"),
    ("empty", ""),
    ("dot", "."),
    ("dot-dot", ".."),
    ("hidden name", ".alice"),
    ("NUL byte", "alice\x00bob"),
    ("10 KB long", "a" * 10_240),
    ("129 characters", "b" * 129),
    ("Cyrillic look-alike", "\u0430lice"),
    ("fullwidth look-alike", "\uff41lice"),
    ("combining accent", "alice\u0301"),
    ("space", "alice smith"),
    ("trailing newline", "alice\n"),
    ("not a string (int)", 42),
    ("not a string (None)", None),
]

# Planted in a scenario file: the refusal must not echo it.
_FAKE_SECRET = "scenario-file-secret-7f3a9c"  # noqa: S105 - a planted fake
# Each bad file is a shipped scenario with exactly one fault (a line pattern and what
# replaces it), so the error is about that fault.
_BASE_SCENARIO = "desktop-local.toml"
# A bad scenario file ends `run` before anything starts: about 0.6 s, most of it Python's
# start-up. A minute means the command hangs.
_CLI_TIMEOUT_S = 60.0
_SCENARIO_FAULTS: Mapping[str, tuple[str, str]] = {
    "invalid TOML": (r"^\[env\]$", "[env"),
    "unknown key": (r"^name = .*$", '\\g<0>\ncolour = "blue"'),
    "wrong type": (r"^sizes = .*$", 'sizes = "many"'),
    "runtime key holding a secret": (
        r"^\[env\]$",
        f'[env]\nAWS_SECRET_ACCESS_KEY = "{_FAKE_SECRET}"',
    ),
    "FRONTEND_TYPE missing": (r"^FRONTEND_TYPE = .*\n", ""),
    "storage mode not the expected one": (
        r"^expected_storage_mode = .*$",
        'expected_storage_mode = "s3_primary_local_cache"',
    ),
}


async def _config_cases(ctx: SuiteContext, catalogue: Catalogue) -> None:
    root = ctx.folder("badinput", "config") / "never-created"
    base = mode_env(SYNC, root, ctx.endpoint, device="cfg")

    def watch() -> object:
        return folder_snapshot(root.parent), root.exists()

    for name, changes in _CONFIG_CASES:
        env = {k: v for k, v in {**base, **changes}.items() if v is not None}
        text = ", ".join(
            f"{k}={v!r}" if v is not None else f"{k} unset" for k, v in changes.items()
        )
        await catalogue.case(
            category="configuration",
            name=name,
            shown=text,
            action=sync_call(partial(LanceDBSyncConfig.from_env, env)),
            expect=ConfigError,
            watch=watch,
        )
    # A configuration read without validation still cannot start a service.
    unchecked = LanceDBSyncConfig.from_env(
        {**base, "BACKEND_LOCATION": "cloud", "S3_STORAGE_ENABLED": "false"}, validate=False
    )
    await catalogue.case(
        category="configuration",
        name="service from an unvalidated configuration",
        shown="BACKEND_LOCATION='cloud', S3_STORAGE_ENABLED='false', from_env(validate=False)",
        action=sync_call(lambda: LanceDBStorageService(unchecked, endpoint=ctx.endpoint)),
        expect=ConfigError,
        watch=watch,
    )


async def _user_cases(ctx: SuiteContext, catalogue: Catalogue) -> None:
    ep = ctx.endpoint_below("badinput-users")
    root = ctx.folder("badinput", "users")
    async with open_service(SYNC, root, ep, device="u") as svc:
        await svc.add_documents("valid-user", [document("v1", 1)])
        await svc.sync("valid-user")
        await svc.wait_idle("valid-user")  # the sync's state file is written after it returns

        def watch() -> object:
            return folder_snapshot(root), s3_listing(ep)

        for name, user in _BAD_USERS:
            bad: Any = user
            await catalogue.case(
                category="user id",
                name=f"{name}: add",
                shown=shown(user),
                action=partial(svc.add_documents, bad, [document("x", 1)]),
                expect=UserIdError,
                watch=watch,
            )
        for name, call in (
            ("traversal: get", lambda: svc.get_document("../valid-user", "v1")),
            ("traversal: sync", lambda: svc.sync("../valid-user")),
            ("traversal: delete", lambda: svc.delete_documents("../valid-user", ["v1"])),
        ):
            await catalogue.case(
                category="user id",
                name=name,
                shown="'../valid-user'",
                action=call,
                expect=UserIdError,
                watch=watch,
            )


async def _scenario_cases(ctx: SuiteContext, catalogue: Catalogue) -> None:
    from lancesync_bench.bench.runner import default_scenarios_dir
    from lancesync_bench.scenarios import load_scenario

    ctx.secrets.append(_FAKE_SECRET)
    base = (default_scenarios_dir() / _BASE_SCENARIO).read_text()
    for i, (name, (pattern, replacement)) in enumerate(_SCENARIO_FAULTS.items()):
        text, found = re.subn(pattern, replacement, base, count=1, flags=re.MULTILINE)
        if not found:
            raise RuntimeError(f"{_BASE_SCENARIO} has no line matching {pattern!r}")
        folder = ctx.folder("badinput", f"scenario-{i}")
        path = folder / _BASE_SCENARIO
        path.write_text(text)
        await catalogue.case(
            category="scenario file",
            name=f"{name}: load",
            shown=f"{_BASE_SCENARIO} with {pattern!r} -> "
            + repr(replacement.replace(_FAKE_SECRET, "***")),
            action=sync_call(partial(load_scenario, path)),
            expect=ConfigError,
            watch=partial(folder_snapshot, folder),
        )
        await _scenario_cli_case(ctx, catalogue, name=name, folder=folder)


async def _scenario_cli_case(
    ctx: SuiteContext, catalogue: Catalogue, *, name: str, folder: Path
) -> None:
    """``lancesync-bench run`` on a folder holding the bad file: exit 2, one line, no output.

    The command runs as a process, as a user runs it (and so that chaos/, which the command
    line drives, never imports the command line).
    """
    codes: list[int] = []
    stderr: list[str] = []
    argv = [sys.executable, "-m", "lancesync_bench", "run", "--scenarios-dir", str(folder)]
    argv += ["--out", str(folder / "results"), "--s3", "external", "--no-progress"]

    def run_cli() -> None:
        # The shell's own FRONTEND_TYPE & co. would add run's note about --env to stderr.
        env = {k: v for k, v in os.environ.items() if k not in MODE_VARIABLES}
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_CLI_TIMEOUT_S, check=False, env=env
        )
        codes.append(done.returncode)
        stderr.append(done.stderr)
        raise ConfigError(done.stderr.strip())  # the CLI's one line, as an error

    async def in_thread() -> None:
        await asyncio.to_thread(run_cli)

    record = await catalogue.case(
        category="scenario file",
        name=f"{name}: lancesync-bench run",
        shown="run --scenarios-dir <folder with the bad file> --s3 external",
        action=in_thread,
        expect=ConfigError,
        watch=lambda: folder_snapshot(folder),
    )
    record["exit_code"] = codes[0] if codes else None
    record["passed"] = bool(
        record["passed"]
        and record["exit_code"] == 2
        and str(record["message"]).startswith("lancesync-bench: error:")
    )
    ctx.texts[f"scenario cli stderr: {name}"] = "".join(stderr)


def _failure(records: list[dict[str, Any]]) -> str:
    bad = [r for r in records if not r["passed"]]
    text = f"{len(records) - len(bad)}/{len(records)}"
    if bad:
        first = bad[0]
        text += (
            f"; first failure: {first['case']} -> {first['error_type']}: {first['message']} "
            f"(nothing written: {first['nothing_written']})"
        )
    return text


async def run_bad_input(ctx: SuiteContext, section: Section) -> None:
    """The bad-input section."""
    catalogue = Catalogue()
    await _config_cases(ctx, catalogue)
    await _user_cases(ctx, catalogue)
    observations = await document_cases(ctx, catalogue)
    await s3_cases(ctx, catalogue)
    await _scenario_cases(ctx, catalogue)
    cases = catalogue.cases
    section.cases = cases
    for record in cases:
        ctx.texts[f"bad input: {record['case']}"] = str(record["message"])
    groups = catalogue.by_category()
    section.figure(
        cases=len(cases),
        rejected_cleanly=sum(r["passed"] for r in cases),
        by_category={
            k: {"cases": len(v), "passed": sum(r["passed"] for r in v)} for k, v in groups.items()
        },
        missing_bucket_caught_at={
            r["case"]: r.get("caught_at") for r in groups.get("S3 bucket", [])
        },
        query_observations=observations,
    )
    for category, records in groups.items():
        section.check(
            f"every bad {category} rejected with a clear error, nothing written",
            all(r["passed"] for r in records),
            _failure(records),
        )
    s3 = groups.get("S3 access keys", []) + groups.get("S3 bucket", [])
    unnamed = [r for r in s3 if not r.get("names_cause")]
    section.check(
        "S3 errors name the cause (SignatureDoesNotMatch, InvalidAccessKeyId, NoSuchBucket)",
        bool(s3) and not unnamed,
        f"{len(s3) - len(unnamed)}/{len(s3)}"
        + (f"; e.g. {unnamed[0]['case']}: {unnamed[0]['message']}" if unnamed else ""),
    )
