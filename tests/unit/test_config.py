"""The configuration rules: detection, parsing, the storage-mode matrix, validation, secrecy."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from lancesync_bench.config import (
    CLOUD_INDICATORS,
    BackendLocation,
    FrontendType,
    LanceDBSyncConfig,
    Secret,
    StorageMode,
    detect_backend_location,
)
from lancesync_bench.errors import ConfigError

# The spec's list, written out so that a change to CLOUD_INDICATORS is caught here.
SPEC_INDICATORS = (
    "LAMBDA_TASK_ROOT",
    "AWS_LAMBDA_FUNCTION_NAME",
    "FUNCTION_NAME",
    "FUNCTION_TARGET",
    "WEBSITE_SITE_NAME",
    "WEBSITE_INSTANCE_ID",
    "KUBERNETES_SERVICE_HOST",
    "ECS_CONTAINER_METADATA_URI",
    "CLOUD_RUN",
    "VERCEL",
    "RAILWAY_STATIC_URL",
)
BOOL_VARS = ("S3_STORAGE_ENABLED", "USE_S3_AS_PRIMARY", "LOCAL_CACHE_ENABLED", "S3_BACKUP_ENABLED")
BUCKET = "lancesync-test"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def load(**env: str) -> LanceDBSyncConfig:
    """from_env on exactly the given variables, validated."""
    return LanceDBSyncConfig.from_env(env)


def parse(**env: str) -> LanceDBSyncConfig:
    """from_env on exactly the given variables, without the cross-field validation."""
    return LanceDBSyncConfig.from_env(env, validate=False)


def config_error(**env: str) -> str:
    """The message of the ConfigError that from_env raises for ``env``."""
    with pytest.raises(ConfigError) as info:
        LanceDBSyncConfig.from_env(env)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- reading only the given mapping -------------------------------------------------------


class _ForbiddenEnviron(Mapping[str, str]):
    """Stands in for os.environ and fails the test on any read."""

    def __getitem__(self, key: str) -> str:
        raise AssertionError(f"os.environ[{key!r}] was read")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("os.environ was iterated")

    def __len__(self) -> int:
        raise AssertionError("len(os.environ) was read")

    def __contains__(self, key: object) -> bool:
        raise AssertionError(f"{key!r} in os.environ was checked")


@pytest.fixture
def hostile_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fill os.environ with values that contradict every mapping used below."""
    for name in SPEC_INDICATORS:
        monkeypatch.setenv(name, "from-os-environ")
    hostile = {
        "FRONTEND_TYPE": "desktop",
        "BACKEND_LOCATION": "cloud",
        "S3_STORAGE_ENABLED": "maybe",
        "S3_BUCKET": "os-environ-bucket",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-2",
        "AWS_SECRET_ACCESS_KEY": "os-environ-secret",
        "S3_ENDPOINT_URL": "not a url",
        "EMBEDDING_DIM": "-1",
        "HOME": "/os-environ-home",
        "XDG_DATA_HOME": "/os-environ-xdg",
    }
    for name, value in hostile.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("hostile_environ")
def test_from_env_mapping_ignores_conflicting_os_environ() -> None:
    config = load(FRONTEND_TYPE="web", S3_BUCKET=BUCKET, LOCAL_STORAGE_PATH="~/data")
    assert config.frontend_type is FrontendType.WEB
    assert config.backend_location is BackendLocation.LOCAL
    assert "no cloud indicator" in config.detection_reason
    assert config.storage_mode is StorageMode.LOCAL_PRIMARY_S3_SYNC
    assert config.s3_bucket == BUCKET
    assert config.aws_region == "us-east-1"
    assert config.embedding_dim == 384
    assert config.s3_endpoint_url is None
    assert config.aws_secret_access_key is None
    assert not str(config.local_storage_path).startswith("/os-environ")
    local_only = load(FRONTEND_TYPE="web", S3_STORAGE_ENABLED="false")
    assert local_only.storage_mode is StorageMode.LOCAL_ONLY
    assert not str(local_only.local_storage_path).startswith("/os-environ")


def test_from_env_mapping_never_touches_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    # The context restores os.environ before pytest itself needs it, even on failure.
    with monkeypatch.context() as patch:
        patch.setattr(os, "environ", _ForbiddenEnviron())
        config = load(
            FRONTEND_TYPE="desktop",
            LOCAL_STORAGE_PATH="~/x",
            AWS_SECRET_ACCESS_KEY=SECRET,
            S3_BUCKET=BUCKET,
        )
        default = load(FRONTEND_TYPE="desktop", S3_BUCKET=BUCKET).local_storage_path
    assert config.storage_mode is StorageMode.LOCAL_PRIMARY_S3_BACKUP
    assert default.name == "lancesync-bench"


def test_from_env_none_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SPEC_INDICATORS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FRONTEND_TYPE", "web")
    monkeypatch.setenv("BACKEND_LOCATION", "cloud")
    monkeypatch.setenv("S3_BUCKET", BUCKET)
    config = LanceDBSyncConfig.from_env()
    assert (config.frontend_type, config.backend_location) == ("web", "cloud")
    assert config.s3_bucket == BUCKET


def test_home_and_xdg_come_from_the_mapping() -> None:
    base = {"FRONTEND_TYPE": "web", "S3_STORAGE_ENABLED": "false"}
    home = LanceDBSyncConfig.from_env({**base, "HOME": "/home/u"})
    assert home.local_storage_path == Path("/home/u/.local/share/lancesync-bench")
    xdg = LanceDBSyncConfig.from_env({**base, "HOME": "/home/u", "XDG_DATA_HOME": "/data"})
    assert xdg.local_storage_path == Path("/data/lancesync-bench")
    tilde = LanceDBSyncConfig.from_env({**base, "HOME": "/home/u", "LOCAL_STORAGE_PATH": "~/v"})
    assert tilde.local_storage_path == Path("/home/u/v")
    explicit = LanceDBSyncConfig.from_env({**base, "LOCAL_STORAGE_PATH": " /srv/lance "})
    assert explicit.local_storage_path == Path("/srv/lance")


# -- FRONTEND_TYPE ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   "])
def test_frontend_type_is_required(value: str | None) -> None:
    env = {} if value is None else {"FRONTEND_TYPE": value}
    message = config_error(**env)
    assert "FRONTEND_TYPE" in message
    assert "not set" in message
    assert "web" in message and "desktop" in message


@pytest.mark.parametrize("value", ["mobile", "webapp", "desk top"])
def test_frontend_type_rejects_other_values(value: str) -> None:
    message = config_error(FRONTEND_TYPE=value)
    assert "FRONTEND_TYPE" in message and repr(value) in message
    assert "'web'" in message and "'desktop'" in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("web", "web"),
        (" WEB ", "web"),
        ("Web\t", "web"),
        ("desktop", "desktop"),
        ("\nDeskTop", "desktop"),
    ],
)
def test_frontend_type_is_case_and_whitespace_insensitive(raw: str, expected: str) -> None:
    config = load(FRONTEND_TYPE=raw, S3_BUCKET=BUCKET)
    assert config.frontend_type is FrontendType(expected)
    assert config.is_web_frontend() is (expected == "web")


# -- BACKEND_LOCATION and cloud detection -------------------------------------------------


def test_cloud_indicators_are_exactly_the_spec_list() -> None:
    assert tuple(name for name, _ in CLOUD_INDICATORS) == SPEC_INDICATORS


@pytest.mark.parametrize("indicator", SPEC_INDICATORS)
@pytest.mark.parametrize("value", ["1", ""])
def test_each_cloud_indicator_alone_means_cloud(indicator: str, value: str) -> None:
    config = load(FRONTEND_TYPE="web", S3_BUCKET=BUCKET, **{indicator: value})
    assert config.backend_location is BackendLocation.CLOUD
    assert config.is_cloud_backend()
    assert indicator in config.detection_reason
    assert config.to_dict()["detection_reason"] == config.detection_reason


@pytest.mark.parametrize("indicator", SPEC_INDICATORS)
def test_explicit_local_wins_over_every_indicator(indicator: str) -> None:
    config = load(
        FRONTEND_TYPE="web", BACKEND_LOCATION="local", S3_BUCKET=BUCKET, **{indicator: "x"}
    )
    assert config.backend_location is BackendLocation.LOCAL
    assert not config.is_cloud_backend()
    assert "explicit" in config.detection_reason


def test_explicit_local_wins_over_all_indicators_at_once() -> None:
    env = {name: "x" for name in SPEC_INDICATORS}
    location, reason = detect_backend_location({**env, "BACKEND_LOCATION": "local"})
    assert location is BackendLocation.LOCAL and "explicit" in reason


@pytest.mark.parametrize("raw", ["cloud", "CLOUD", "  Cloud\n"])
def test_explicit_cloud_without_indicators(raw: str) -> None:
    config = load(FRONTEND_TYPE="web", BACKEND_LOCATION=raw, S3_BUCKET=BUCKET)
    assert config.backend_location is BackendLocation.CLOUD
    assert "explicit" in config.detection_reason


@pytest.mark.parametrize("raw", ["local", "LOCAL", " Local "])
def test_explicit_local_any_case(raw: str) -> None:
    assert (
        load(FRONTEND_TYPE="desktop", BACKEND_LOCATION=raw, S3_BUCKET=BUCKET).backend_location
        == "local"
    )


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_backend_location_falls_back_to_detection(blank: str) -> None:
    local = load(FRONTEND_TYPE="web", BACKEND_LOCATION=blank, S3_BUCKET=BUCKET)
    assert local.backend_location is BackendLocation.LOCAL
    assert "no cloud indicator" in local.detection_reason
    cloud = load(FRONTEND_TYPE="web", BACKEND_LOCATION=blank, VERCEL="1", S3_BUCKET=BUCKET)
    assert cloud.backend_location is BackendLocation.CLOUD
    assert "VERCEL" in cloud.detection_reason


@pytest.mark.parametrize(
    "lookalike", ["AWS_REGION", "K_SERVICE", "GOOGLE_CLOUD_PROJECT", "DOCKER", "HOSTNAME", "vercel"]
)
def test_other_variables_are_not_cloud_indicators(lookalike: str) -> None:
    config = load(FRONTEND_TYPE="web", S3_BUCKET=BUCKET, **{lookalike: "1"})
    assert config.backend_location is BackendLocation.LOCAL
    assert "no cloud indicator" in config.detection_reason


@pytest.mark.parametrize("value", ["remote", "aws", "on-prem"])
def test_backend_location_rejects_other_values(value: str) -> None:
    message = config_error(FRONTEND_TYPE="web", BACKEND_LOCATION=value)
    assert "BACKEND_LOCATION" in message and repr(value) in message
    assert "'cloud'" in message and "'local'" in message


# -- booleans and the defaults matrix -------------------------------------------------------


@pytest.mark.parametrize("var", BOOL_VARS)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True), ("TRUE", True), (" True ", True), ("1", True), ("yes", True),
        ("YES", True), ("on", True), ("On", True),
        ("false", False), ("FALSE", False), ("\tFalse", False), ("0", False), ("no", False),
        ("No", False), ("off", False), ("OFF ", False),
    ],
)  # fmt: skip
def test_booleans_accept_every_spelling(var: str, raw: str, expected: bool) -> None:
    config = parse(FRONTEND_TYPE="web", **{var: raw})
    assert getattr(config, var.lower()) is expected
    assert var in config.explicit


@pytest.mark.parametrize("var", BOOL_VARS)
@pytest.mark.parametrize("value", ["maybe", "2", "truee", "y", "enabled"])
def test_booleans_reject_other_values(var: str, value: str) -> None:
    message = config_error(FRONTEND_TYPE="web", **{var: value})
    assert var in message and repr(value) in message
    for allowed in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        assert allowed in message


# (frontend, backend) -> (S3_STORAGE_ENABLED, USE_S3_AS_PRIMARY, LOCAL_CACHE_ENABLED,
# S3_BACKUP_ENABLED, storage mode): the spec's configuration matrix.
MATRIX = {
    ("web", "cloud"): (True, True, True, False, StorageMode.S3_PRIMARY_LOCAL_CACHE),
    ("web", "local"): (True, False, True, False, StorageMode.LOCAL_PRIMARY_S3_SYNC),
    ("desktop", "cloud"): (False, False, True, True, StorageMode.LOCAL_PRIMARY_S3_BACKUP),
    ("desktop", "local"): (False, False, True, True, StorageMode.LOCAL_PRIMARY_S3_BACKUP),
}


@pytest.mark.parametrize(("frontend", "backend"), list(MATRIX))
def test_matrix_cell_defaults(frontend: str, backend: str) -> None:
    config = load(FRONTEND_TYPE=frontend, BACKEND_LOCATION=backend, S3_BUCKET=BUCKET)
    *flags, mode = MATRIX[(frontend, backend)]
    actual = [config.s3_storage_enabled, config.use_s3_as_primary]
    actual += [config.local_cache_enabled, config.s3_backup_enabled]
    assert actual == flags
    assert config.storage_mode is mode
    assert config.get_recommended_storage_mode() is mode
    assert config.frontend_type is FrontendType(frontend)
    assert config.backend_location is BackendLocation(backend)
    assert config.is_web_frontend() is (frontend == "web")
    assert config.is_cloud_backend() is (backend == "cloud")
    assert config.explicit == frozenset()
    assert config.to_dict()["storage_mode"] == mode.value


@pytest.mark.parametrize("backend", ["cloud", "local"])
def test_desktop_is_local_first_whatever_the_backend(backend: str) -> None:
    config = load(FRONTEND_TYPE="desktop", BACKEND_LOCATION=backend, S3_BUCKET=BUCKET)
    assert not config.use_s3_as_primary
    assert not config.storage_mode.s3_is_primary


def test_detected_cloud_gives_the_cloud_defaults() -> None:
    config = load(FRONTEND_TYPE="web", AWS_LAMBDA_FUNCTION_NAME="fn", S3_BUCKET=BUCKET)
    assert config.storage_mode is StorageMode.S3_PRIMARY_LOCAL_CACHE


def test_explicit_flag_overrides_the_default() -> None:
    config = load(
        FRONTEND_TYPE="web", BACKEND_LOCATION="cloud", USE_S3_AS_PRIMARY="no", S3_BUCKET=BUCKET
    )
    assert config.use_s3_as_primary is False
    assert config.storage_mode is StorageMode.LOCAL_PRIMARY_S3_SYNC


def test_local_only_when_s3_is_switched_off() -> None:
    web = load(FRONTEND_TYPE="web", BACKEND_LOCATION="local", S3_STORAGE_ENABLED="false")
    assert web.storage_mode is StorageMode.LOCAL_ONLY
    assert not web.storage_mode.uses_s3
    desktop = load(FRONTEND_TYPE="desktop", BACKEND_LOCATION="local", S3_BACKUP_ENABLED="off")
    assert desktop.storage_mode is StorageMode.LOCAL_ONLY


# -- validation -------------------------------------------------------------------------------


def test_web_local_without_s3_is_valid_alone() -> None:
    config = load(FRONTEND_TYPE="web", BACKEND_LOCATION="local", S3_STORAGE_ENABLED="false")
    config.validate()
    assert config.storage_mode is StorageMode.LOCAL_ONLY
    assert config.s3_bucket is None


@pytest.mark.parametrize(
    "extra",
    [{"BACKEND_LOCATION": "cloud"}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}],
    ids=["explicit", "detected"],
)
@pytest.mark.parametrize("backup", [None, "true"])
def test_cloud_backend_requires_s3(extra: dict[str, str], backup: str | None) -> None:
    env = {"FRONTEND_TYPE": "web", "S3_STORAGE_ENABLED": "false", "S3_BUCKET": BUCKET, **extra}
    if backup is not None:
        env["S3_BACKUP_ENABLED"] = backup
    config = LanceDBSyncConfig.from_env(env, validate=False)  # parses: a cross-field error
    with pytest.raises(ConfigError) as info:
        config.validate()
    message = str(info.value)
    assert "S3_STORAGE_ENABLED=false" in message
    assert "cloud" in message and "true" in message and "BACKEND_LOCATION=local" in message
    with pytest.raises(ConfigError):
        LanceDBSyncConfig.from_env(env)


def test_desktop_cloud_without_any_s3_is_an_error() -> None:
    env = {"FRONTEND_TYPE": "desktop", "BACKEND_LOCATION": "cloud", "S3_BACKUP_ENABLED": "false"}
    with pytest.raises(ConfigError) as info:
        LanceDBSyncConfig.from_env(env)
    message = str(info.value)
    assert "S3_BACKUP_ENABLED=false" in message and "cloud" in message


@pytest.mark.parametrize("backend", ["cloud", "local"])
def test_desktop_must_not_use_s3_as_primary(backend: str) -> None:
    env = {
        "FRONTEND_TYPE": "desktop",
        "BACKEND_LOCATION": backend,
        "USE_S3_AS_PRIMARY": "true",
        "S3_STORAGE_ENABLED": "true",
        "S3_BUCKET": BUCKET,
    }
    config = LanceDBSyncConfig.from_env(env, validate=False)
    with pytest.raises(ConfigError) as info:
        config.validate()
    message = str(info.value)
    assert "USE_S3_AS_PRIMARY=true" in message and "desktop" in message
    assert "USE_S3_AS_PRIMARY=false" in message


@pytest.mark.parametrize(("frontend", "backend"), list(MATRIX))
def test_modes_using_s3_need_a_bucket(frontend: str, backend: str) -> None:
    env = {"FRONTEND_TYPE": frontend, "BACKEND_LOCATION": backend}
    config = LanceDBSyncConfig.from_env(env, validate=False)
    assert config.storage_mode.uses_s3
    with pytest.raises(ConfigError) as info:
        config.validate()
    message = str(info.value)
    assert "S3_BUCKET" in message and "not set" in message
    assert config.storage_mode.value in message


# -- bad values: each names the variable and the value ---------------------------------------

BAD_VALUES = [
    ("EMBEDDING_DIM", "abc"),
    ("EMBEDDING_DIM", "0"),
    ("EMBEDDING_DIM", "-5"),
    ("EMBEDDING_DIM", "3.5"),
    ("EMBEDDING_DIM", "1000000"),
    ("S3_ENDPOINT_URL", "ftp://example.com"),
    ("S3_ENDPOINT_URL", "localhost:9000"),
    ("S3_ENDPOINT_URL", "http://"),
    ("S3_ENDPOINT_URL", "http://host:99999"),
    ("AWS_ENDPOINT_URL", "s3.example.com"),
    ("S3_BUCKET", "Bad_Bucket"),
    ("S3_BUCKET", "ab"),
    ("S3_BUCKET", "-bucket"),
    ("S3_BUCKET", "bucket-"),
    ("S3_BUCKET", "b" * 64),
    ("S3_PREFIX", "../escape"),
    ("S3_PREFIX", "apps/../other"),
    ("S3_PREFIX", "apps/./notes"),
    ("S3_PREFIX", "apps//notes"),
    ("S3_PREFIX", "apps/\x00"),
    ("LOCAL_STORAGE_PATH", "/data/\x00x"),
]


@pytest.mark.parametrize(("var", "value"), BAD_VALUES)
def test_bad_value_is_rejected_by_from_env_naming_variable_and_value(var: str, value: str) -> None:
    env = {"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "local", var: value}
    with pytest.raises(ConfigError) as info:
        LanceDBSyncConfig.from_env(env, validate=False)  # parsing alone rejects it
    message = str(info.value)
    assert f"{var}={value!r}" in message
    assert "allowed" in message
    assert "\n" not in message


def test_number_messages_state_the_range() -> None:
    message = config_error(FRONTEND_TYPE="web", EMBEDDING_DIM="0")
    assert "1" in message and "16384" in message


@pytest.mark.parametrize(("raw", "expected"), [(None, 384), ("768", 768), (" 16 ", 16)])
def test_embedding_dim(raw: str | None, expected: int) -> None:
    env = {"FRONTEND_TYPE": "web", "S3_STORAGE_ENABLED": "false"}
    if raw is not None:
        env["EMBEDDING_DIM"] = raw
    assert LanceDBSyncConfig.from_env(env).embedding_dim == expected


def test_valid_s3_settings_are_kept() -> None:
    config = load(
        FRONTEND_TYPE="web",
        S3_BUCKET="my.bucket-1",
        S3_PREFIX="/apps/notes/",
        S3_ENDPOINT_URL="http://127.0.0.1:8333/",
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
    )
    assert config.s3_bucket == "my.bucket-1"
    assert config.s3_prefix == "apps/notes"
    assert config.s3_endpoint_url == "http://127.0.0.1:8333"
    assert config.aws_access_key_id == "AKIAEXAMPLE"


def test_endpoint_falls_back_to_aws_endpoint_url() -> None:
    base = {"FRONTEND_TYPE": "web", "S3_BUCKET": BUCKET}
    fallback = LanceDBSyncConfig.from_env({**base, "AWS_ENDPOINT_URL": "https://s3.example.com"})
    assert fallback.s3_endpoint_url == "https://s3.example.com"
    both = {**base, "AWS_ENDPOINT_URL": "https://a.example", "S3_ENDPOINT_URL": "https://b.example"}
    assert LanceDBSyncConfig.from_env(both).s3_endpoint_url == "https://b.example"


@pytest.mark.parametrize(
    ("env", "region"),
    [
        ({}, "us-east-1"),
        ({"AWS_DEFAULT_REGION": "eu-west-2"}, "eu-west-2"),
        ({"AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "eu-west-2"}, "ap-south-1"),
        ({"AWS_REGION": " ", "AWS_DEFAULT_REGION": "eu-west-2"}, "eu-west-2"),
    ],
)
def test_region_fallbacks(env: dict[str, str], region: str) -> None:
    assert load(FRONTEND_TYPE="web", S3_BUCKET=BUCKET, **env).aws_region == region


# -- the spec's migration scenarios ------------------------------------------------------------

MIGRATIONS = {
    "development": (
        {"BACKEND_LOCATION": "local", "FRONTEND_TYPE": "web", "S3_STORAGE_ENABLED": "false"},
        StorageMode.LOCAL_ONLY,
    ),
    "production": (
        {
            "BACKEND_LOCATION": "cloud",
            "FRONTEND_TYPE": "web",
            "S3_STORAGE_ENABLED": "true",
            "USE_S3_AS_PRIMARY": "true",
        },
        StorageMode.S3_PRIMARY_LOCAL_CACHE,
    ),
    "desktop": (
        {"FRONTEND_TYPE": "desktop", "S3_STORAGE_ENABLED": "false", "S3_BACKUP_ENABLED": "true"},
        StorageMode.LOCAL_PRIMARY_S3_BACKUP,
    ),
    "web": (
        {
            "FRONTEND_TYPE": "web",
            "BACKEND_LOCATION": "cloud",
            "S3_STORAGE_ENABLED": "true",
            "USE_S3_AS_PRIMARY": "true",
        },
        StorageMode.S3_PRIMARY_LOCAL_CACHE,
    ),
}


@pytest.mark.parametrize("name", list(MIGRATIONS))
def test_migration_scenarios_resolve_to_expected_modes(name: str) -> None:
    spec_env, mode = MIGRATIONS[name]
    resolved = LanceDBSyncConfig.from_env(spec_env, validate=False)
    assert resolved.storage_mode is mode
    if mode.uses_s3:  # the spec's snippets leave the bucket out; validation asks for it
        with pytest.raises(ConfigError, match="S3_BUCKET"):
            resolved.validate()
        spec_env = {**spec_env, "S3_BUCKET": BUCKET}
    config = LanceDBSyncConfig.from_env(spec_env)
    assert config.storage_mode is mode


# -- the secret ---------------------------------------------------------------------------------


@pytest.fixture
def secret_config() -> LanceDBSyncConfig:
    """A valid configuration carrying SECRET as its secret access key."""
    return load(FRONTEND_TYPE="web", S3_BUCKET=BUCKET, AWS_SECRET_ACCESS_KEY=SECRET)


def _views(config: LanceDBSyncConfig) -> dict[str, str]:
    key = config.aws_secret_access_key
    assert key is not None
    return {
        "repr": repr(config),
        "str": str(config),
        "format": format(config),
        "f-string": f"{config} {config!r} {key} {key!r} {key:>60}",
        "to_dict": repr(config.to_dict()),
        "json": json.dumps(config.to_dict()),
        "secret repr": repr(key),
        "secret str": str(key),
        "vars": repr(vars(config)),
        "asdict": repr(dataclasses.asdict(config)),
        "copy": repr(copy.copy(config)) + repr(copy.deepcopy(config)),
    }


def test_secret_never_appears_in_any_view(secret_config: LanceDBSyncConfig) -> None:
    for view, text in _views(secret_config).items():
        assert SECRET not in text, view
    assert secret_config.to_dict()["aws_secret_access_key"] == "***"
    assert secret_config.aws_secret_access_key == Secret(SECRET)


def test_secret_is_kept_for_the_s3_client(secret_config: LanceDBSyncConfig) -> None:
    key = secret_config.aws_secret_access_key
    assert key is not None and key.reveal() == SECRET


def test_secret_never_appears_in_logs(
    secret_config: LanceDBSyncConfig, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("lancesync_bench.test")
    with caplog.at_level(logging.DEBUG):
        log.info("config %s", secret_config)
        log.info("config %r", secret_config)
        log.info("dict %s", secret_config.to_dict())
        log.info("key %s", secret_config.aws_secret_access_key)
    assert len(caplog.records) == 4
    assert SECRET not in caplog.text


def test_secret_never_appears_in_validation_errors() -> None:
    env = {"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "cloud", "AWS_SECRET_ACCESS_KEY": SECRET}
    message = config_error(**env)
    assert SECRET not in message


def test_no_secret_means_none() -> None:
    config = load(FRONTEND_TYPE="web", S3_BUCKET=BUCKET, AWS_SECRET_ACCESS_KEY="  ")
    assert config.aws_secret_access_key is None
    assert config.to_dict()["aws_secret_access_key"] is None


def test_to_dict_is_json_ready(secret_config: LanceDBSyncConfig) -> None:
    exported: dict[str, Any] = json.loads(json.dumps(secret_config.to_dict()))
    expected = {"frontend_type": "web", "backend_location": "local", "s3_bucket": BUCKET}
    assert expected.items() <= exported.items()
