"""Notebook 01's tables: the configuration matrix, backend detection, validation errors.

Every row is computed by the real configuration code (:meth:`LanceDBSyncConfig.from_env`
on a synthetic environment), never typed in, so the tables cannot drift from what a
deployment gets. No environment here holds a credential.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from lancesync_bench.config import CLOUD_INDICATORS, LanceDBSyncConfig
from lancesync_bench.errors import ConfigError
from lancesync_bench.matrix import MATRIX_KEYS, configuration_matrix

__all__ = [
    "INDICATOR_EXAMPLES",
    "VALIDATION_CASES",
    "ConfigCheck",
    "check_env",
    "detection_frame",
    "matrix_frame",
    "validation_errors_frame",
]

# A bucket name that passes validation; nothing is ever sent to it.
_BUCKET = {"S3_BUCKET": "notes-app"}

# What each cloud platform typically sets; only the variable's presence matters.
INDICATOR_EXAMPLES: dict[str, str] = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_FUNCTION_NAME": "notes-api",
    "FUNCTION_NAME": "notes-api",
    "FUNCTION_TARGET": "handler",
    "WEBSITE_SITE_NAME": "notes-api",
    "WEBSITE_INSTANCE_ID": "4f2c9a",
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "ECS_CONTAINER_METADATA_URI": "http://169.254.170.2/v3/task",
    "CLOUD_RUN": "1",
    "VERCEL": "1",
    "RAILWAY_STATIC_URL": "notes.up.railway.app",
}

_MATRIX_COLUMNS = {
    "frontend_type": "frontend",
    "backend_location": "backend",
    "storage_mode": "storage mode",
    "s3_primary": "S3 primary",
    "local_cache": "local cache",
    "s3_sync": "S3 sync",
    "s3_backup": "S3 backup",
    "use_case": "use case",
}

_WEB_CLOUD = {"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "cloud"}
# The mistakes a user meets, each with the variables that cause it; the last row is the
# fix of the "without a bucket" mistake, for contrast.
VALIDATION_CASES: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "desktop app asks for S3 as primary",
        {"FRONTEND_TYPE": "desktop", "USE_S3_AS_PRIMARY": "true", **_BUCKET},
    ),
    (
        "web app in the cloud with S3 switched off",
        {**_WEB_CLOUD, "S3_STORAGE_ENABLED": "false", **_BUCKET},
    ),
    (
        "same, the cloud detected from Kubernetes",
        {
            "FRONTEND_TYPE": "web",
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "S3_STORAGE_ENABLED": "false",
            **_BUCKET,
        },
    ),
    ("web app in the cloud without a bucket", dict(_WEB_CLOUD)),
    (
        "web app with a local backend asks for S3 as primary",
        {
            "FRONTEND_TYPE": "web",
            "BACKEND_LOCATION": "local",
            "USE_S3_AS_PRIMARY": "true",
            **_BUCKET,
        },
    ),
    ("frontend type not set", {"BACKEND_LOCATION": "cloud", **_BUCKET}),
    ("a flag that is not a boolean", {"FRONTEND_TYPE": "web", "S3_STORAGE_ENABLED": "maybe"}),
    ("the fix: web app in the cloud with a bucket", {**_WEB_CLOUD, **_BUCKET}),
)


@dataclass(frozen=True)
class ConfigCheck:
    """What the configuration code made of one environment: a config or the error."""

    config: LanceDBSyncConfig | None
    error: ConfigError | None

    @property
    def outcome(self) -> str:
        """``accepted: <mode>`` or ``ConfigError``."""
        if self.config is not None:
            return f"accepted: {self.config.storage_mode.value}"
        return type(self.error).__name__


def check_env(env: Mapping[str, str]) -> ConfigCheck:
    """Resolve and validate ``env`` like a deployment would; keep a ConfigError as data."""
    try:
        return ConfigCheck(LanceDBSyncConfig.from_env(env), None)
    except ConfigError as exc:
        return ConfigCheck(None, exc)


def _shown(env: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in env.items())


def matrix_frame() -> pd.DataFrame:
    """The four frontend x backend rows with default flags, from :func:`configuration_matrix`."""
    rows = [row.as_dict() for row in configuration_matrix()]
    return pd.DataFrame(rows, columns=list(MATRIX_KEYS)).rename(columns=_MATRIX_COLUMNS)


def _detection_cases() -> list[tuple[str, dict[str, str]]]:
    cases: list[tuple[str, dict[str, str]]] = [("(no indicator)", {})]
    for name, _platform in CLOUD_INDICATORS:
        value = INDICATOR_EXAMPLES[name]
        cases.append((f"{name}={value}", {name: value}))
    override = {"BACKEND_LOCATION": "local", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    cases.append(("BACKEND_LOCATION=local, KUBERNETES_SERVICE_HOST=10.96.0.1", override))
    cases.append(("BACKEND_LOCATION=cloud", {"BACKEND_LOCATION": "cloud"}))
    return cases


def detection_frame() -> pd.DataFrame:
    """Which backend location each cloud indicator (and the explicit override) selects.

    One row per indicator of the spec, plus no indicator at all and ``BACKEND_LOCATION``
    set both ways; with the storage mode a web and a desktop frontend then get.
    """
    platforms = dict(CLOUD_INDICATORS)
    rows = []
    for shown, env in _detection_cases():
        web = LanceDBSyncConfig.from_env({"FRONTEND_TYPE": "web", **_BUCKET, **env})
        desktop = LanceDBSyncConfig.from_env({"FRONTEND_TYPE": "desktop", **_BUCKET, **env})
        indicator = next((name for name in env if name in platforms), None)
        rows.append(
            {
                "variables set": shown,
                "platform": platforms[indicator] if indicator else "-",
                "detected location": web.backend_location.value,
                "reason": web.detection_reason,
                "mode (web)": web.storage_mode.value,
                "mode (desktop)": desktop.storage_mode.value,
            }
        )
    return pd.DataFrame(rows).set_index("variables set")


def validation_errors_frame(
    cases: Sequence[tuple[str, Mapping[str, str]]] = VALIDATION_CASES,
) -> pd.DataFrame:
    """Each case's variables, the outcome, and the ConfigError message exactly as raised."""
    rows = []
    for name, env in cases:
        check = check_env(env)
        rows.append(
            {
                "case": name,
                "variables": _shown(env),
                "outcome": check.outcome,
                "message": str(check.error) if check.error else "",
            }
        )
    return pd.DataFrame(rows).set_index("case")
