"""Shared fixtures: one embedded SeaweedFS server per test session, a fresh prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from lancesync_bench.s3.embedded import EmbeddedSeaweedFS
from lancesync_bench.s3.endpoint import S3Endpoint


@pytest.fixture(scope="session")
def s3_server() -> Iterator[EmbeddedSeaweedFS]:
    """A real SeaweedFS S3 server on 127.0.0.1, started once and removed at the end."""
    with EmbeddedSeaweedFS() as server:
        yield server


@pytest.fixture
def s3(s3_server: EmbeddedSeaweedFS) -> S3Endpoint:
    """The session server's endpoint with a prefix of its own, so tests never share keys."""
    if not s3_server.running:  # a test that stopped the server must not break the next one
        s3_server.start()
    return s3_server.endpoint().with_prefix(f"t-{uuid.uuid4().hex[:12]}")
