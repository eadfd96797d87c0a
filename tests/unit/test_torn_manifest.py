"""Which torn manifest a writer may remove (``storage.transfer._Held``).

A manifest whose bytes differ from the SHA-256 recorded with them is an upload cut short
(SeaweedFS keeps an empty object for it). The writer that left it removes it on its next
push; another writer leaves it alone while it may still be an upload under way, and
removes it once it is older than ``TORN_REPAIR_AFTER_S``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from lancesync_bench.storage.transfer import TORN_REPAIR_AFTER_S, _Held

TORN_META = {"sha256": hashlib.sha256(b"the whole manifest").hexdigest(), "lancesync-writer": "B"}


def test_a_torn_manifest_is_its_own_writers_to_replace_at_once() -> None:
    held = _Held(b"", dict(TORN_META), datetime.now(UTC))
    assert held.torn
    assert held.replaceable_by("B")
    assert not held.replaceable_by("A")


def test_another_writers_torn_manifest_is_replaceable_only_once_old() -> None:
    now = datetime.now(UTC)
    young = _Held(b"", dict(TORN_META), now - timedelta(seconds=TORN_REPAIR_AFTER_S - 5))
    old = _Held(b"", dict(TORN_META), now - timedelta(seconds=TORN_REPAIR_AFTER_S + 5))
    unknown_age = _Held(b"", dict(TORN_META), None)
    assert not young.replaceable_by("A")
    assert old.replaceable_by("A")
    assert not unknown_age.replaceable_by("A")


def test_a_whole_manifest_or_one_without_a_recorded_sum_is_never_replaced() -> None:
    old = datetime.now(UTC) - timedelta(days=1)
    whole = _Held(b"the whole manifest", dict(TORN_META), old)
    plain = _Held(b"", {}, old)  # plain LanceDB wrote it: nothing to check it against
    for held in (whole, plain):
        assert not held.torn
        assert not held.replaceable_by("A") and not held.replaceable_by("B")
