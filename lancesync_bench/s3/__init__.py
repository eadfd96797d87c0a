"""S3 endpoints: the embedded SeaweedFS, MinIO through testcontainers, or an external one.

:func:`open_s3` picks and starts one (``auto`` prefers MinIO where Docker runs);
:func:`check_access` and :func:`probe_conditional_put` say what it can be trusted with.
"""

from __future__ import annotations

from lancesync_bench.s3.embedded import DEFAULT_BUCKET, EmbeddedSeaweedFS, embedded_s3
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts
from lancesync_bench.s3.minio import (
    DEFAULT_MINIO_IMAGE,
    ContainerPreset,
    ContainerS3,
    docker_available,
    minio_preset,
)
from lancesync_bench.s3.probe import ProbeResult, check_access, probe_conditional_put
from lancesync_bench.s3.select import KINDS, S3Selection, external_endpoint, open_s3

__all__ = [
    "DEFAULT_BUCKET",
    "DEFAULT_MINIO_IMAGE",
    "KINDS",
    "ContainerPreset",
    "ContainerS3",
    "EmbeddedSeaweedFS",
    "ProbeResult",
    "S3Endpoint",
    "S3Selection",
    "Timeouts",
    "check_access",
    "docker_available",
    "embedded_s3",
    "external_endpoint",
    "minio_preset",
    "open_s3",
    "probe_conditional_put",
]
