"""``run --env``: benchmark the storage mode this shell's environment resolves to.

The environment is read exactly as ``lancesync-bench config`` reads it
(:meth:`LanceDBSyncConfig.from_env`), so a value ``config`` rejects is rejected here with
the same message. The measured scenario borrows workload, profiles and targets from the
scenario file of the same storage mode, and its settings from the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

from lancesync_bench.config import LanceDBSyncConfig
from lancesync_bench.errors import ConfigError
from lancesync_bench.scenarios import RUNTIME_KEYS, Scenario

__all__ = ["ENV_SCENARIO", "MODE_VARIABLES", "env_scenario", "mode_variables_set"]

ENV_SCENARIO = "env"  # the name the environment's scenario runs (and is stored) under
# Variables that shape the storage mode and its behaviour. The S3 endpoint, bucket, keys,
# local path, device id and vector size are the runner's own (its S3 server, its temporary
# folders, the workload's vectors), as in every scenario.
MODE_VARIABLES = (
    "FRONTEND_TYPE",
    "BACKEND_LOCATION",
    "S3_STORAGE_ENABLED",
    "USE_S3_AS_PRIMARY",
    "LOCAL_CACHE_ENABLED",
    "S3_BACKUP_ENABLED",
    "CACHE_MAX_STALENESS_MS",
    "SYNC_INTERVAL_S",
    "RETENTION_S",
    "S3_CONNECT_TIMEOUT_S",
    "S3_REQUEST_TIMEOUT_S",
    "S3_MAX_RETRIES",
    "WRITE_DURABILITY",  # read by configurations that have a write log; ignored otherwise
)
# Stand-ins for the S3 settings the runner supplies, so that validation judges the mode
# and its flags, not the absence of a bucket the benchmark does not use.
_RUNNER_S3 = {
    "S3_BUCKET": "env-check",
    "S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "placeholder",
    "AWS_SECRET_ACCESS_KEY": "placeholder",
}


def mode_variables_set(env: Mapping[str, str] | None = None) -> list[str]:
    """Which of :data:`MODE_VARIABLES` are set (non-empty) in ``env`` (``os.environ``)."""
    env = os.environ if env is None else env
    return [name for name in MODE_VARIABLES if env.get(name, "").strip()]


def env_scenario(scenarios: Sequence[Scenario], env: Mapping[str, str] | None = None) -> Scenario:
    """The scenario of the mode ``env`` resolves to, with ``env``'s mode settings.

    Raises :class:`ConfigError` with ``config``'s message when the environment is invalid,
    and when no scenario file covers the resolved mode.
    """
    env = dict(os.environ if env is None else env)
    LanceDBSyncConfig.from_env(env, validate=False)  # unparseable values: config's message
    config = LanceDBSyncConfig.from_env({**env, **_RUNNER_S3})
    mode = config.storage_mode
    # Of the scenarios of that mode, the one standing for the same frontend and backend
    # (desktop + local: desktop-local, not desktop-cloud), else the first.
    same_mode = [sc for sc in scenarios if sc.storage_mode is mode]
    wanted = (config.frontend_type.value, config.backend_location.value)
    template = next(
        (
            sc
            for sc in same_mode
            if (sc.env.get("FRONTEND_TYPE"), sc.env.get("BACKEND_LOCATION")) == wanted
        ),
        same_mode[0] if same_mode else None,
    )
    if template is None:
        have = ", ".join(sorted({sc.storage_mode.value for sc in scenarios})) or "none"
        raise ConfigError(
            f"--env: the environment resolves to storage mode {mode.value}, and no scenario "
            f"file has that mode to borrow a workload from (modes found: {have})"
        )
    chosen = {
        name: env[name]
        for name in mode_variables_set(env)
        if name not in RUNTIME_KEYS and name != "BACKEND_LOCATION"
    }
    # The backend may have been detected from a cloud indicator; the scenario states it,
    # since scenario environments are never merged with os.environ.
    chosen["BACKEND_LOCATION"] = config.backend_location.value
    settings = " ".join(f"{k}={v}" for k, v in chosen.items())
    return dataclasses.replace(
        template,
        name=ENV_SCENARIO,
        description=(
            f"The environment's configuration ({settings}): {mode.value}; workload, "
            f"profiles and targets from {template.name}"
        ),
        env=chosen,
        sweep=template.sweep,
    )
