"""Network profiles: how much delay, jitter, bandwidth and failure a proxied path adds."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, cast

from lancesync_bench.errors import ConfigError

__all__ = ["PRESETS", "FailMode", "NetworkProfile"]

FailMode = Literal["reset", "503"]
_FAIL_MODES: tuple[FailMode, ...] = ("reset", "503")

# A round trip above one minute is a configuration mistake (seconds typed as milliseconds),
# not a network: every S3 client would time out long before the first byte.
_MAX_RTT_MS = 60_000.0
_KEYS = ("preset", "name", "rtt_ms", "jitter_ms", "bandwidth_mbps", "fail_rate", "fail_mode")


def _fail(key: str, value: object, allowed: str) -> ConfigError:
    return ConfigError(f"network profile key {key!r} has value {value!r}; allowed: {allowed}")


@dataclass(frozen=True, kw_only=True)
class NetworkProfile:
    """What the proxy adds to a path between an S3 client and its server.

    * ``rtt_ms``: round-trip time. Each direction is delayed by half of it and every new
      TCP connection by one full round trip (its handshake).
    * ``jitter_ms``: each one-way delay varies uniformly by ``±jitter_ms / 2``, so a round
      trip stays within ``rtt_ms ± jitter_ms``. Byte order within a connection is kept.
    * ``bandwidth_mbps``: optional per-connection, per-direction rate (megabits/s); None
      adds no serialisation delay.
    * ``fail_rate``: share of requests (0..1) the proxy answers itself instead of the
      server, with ``fail_mode`` ``"503"`` (an S3 ``SlowDown`` error) or ``"reset"`` (a TCP
      reset).
    """

    name: str
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_mbps: float | None = None
    fail_rate: float = 0.0
    fail_mode: FailMode = "503"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise _fail("name", self.name, "a non-empty string")
        _check_number("rtt_ms", self.rtt_ms, 0.0, _MAX_RTT_MS)
        _check_number("jitter_ms", self.jitter_ms, 0.0, self.rtt_ms)
        if self.bandwidth_mbps is not None:
            _check_number("bandwidth_mbps", self.bandwidth_mbps, 0.0, math.inf)
            if self.bandwidth_mbps <= 0:
                raise _fail("bandwidth_mbps", self.bandwidth_mbps, "a number > 0, or none")
        _check_number("fail_rate", self.fail_rate, 0.0, 1.0)
        if self.fail_mode not in _FAIL_MODES:
            raise _fail("fail_mode", self.fail_mode, " or ".join(repr(m) for m in _FAIL_MODES))

    @classmethod
    def preset(cls, name: str) -> NetworkProfile:
        """One of :data:`PRESETS` by name (``loopback``, ``same-region``, ``cross-region``)."""
        try:
            return PRESETS[name]
        except KeyError:
            raise _fail("preset", name, ", ".join(sorted(PRESETS))) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> NetworkProfile:
        """A profile from a scenario table, e.g. ``{"preset": "cross-region", "fail_rate": 0.1}``.

        ``preset`` (optional) names the starting point; the other keys override it. Without
        a preset the profile is named ``custom`` unless ``name`` is given.
        """
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise _fail(unknown[0], data[unknown[0]], "keys " + ", ".join(_KEYS))
        preset = data.get("preset")
        if preset is not None and not isinstance(preset, str):
            raise _fail("preset", preset, ", ".join(sorted(PRESETS)))
        base = cls.preset(preset) if preset is not None else cls(name="custom")
        changes: dict[str, object] = {k: v for k, v in data.items() if k != "preset"}
        if preset is not None and "name" not in changes and len(changes) > 0:
            # A preset with overrides is no longer the preset; say so in every result.
            changes["name"] = f"{preset}+custom"
        try:
            return replace(base, **changes)  # type: ignore[arg-type]
        except TypeError as exc:  # defensive: replace() rejects nothing _KEYS allows
            raise ConfigError(f"network profile {dict(data)!r} is not valid: {exc}") from exc

    def with_faults(self, fail_rate: float, fail_mode: FailMode = "503") -> NetworkProfile:
        """This profile with a share of requests failing (named so in results)."""
        return replace(self, name=f"{self.name}+faults", fail_rate=fail_rate, fail_mode=fail_mode)

    def one_way_s(self, rng: random.Random) -> float:
        """A one-way delay in seconds: half the round trip plus a jitter draw."""
        if self.rtt_ms == 0:
            return 0.0
        jitter = rng.uniform(-self.jitter_ms / 2, self.jitter_ms / 2) if self.jitter_ms else 0.0
        return max(0.0, self.rtt_ms / 2 + jitter) / 1000.0

    def transfer_s(self, nbytes: int) -> float:
        """Seconds to push ``nbytes`` through the bandwidth limit (0 when there is none)."""
        if self.bandwidth_mbps is None:
            return 0.0
        return nbytes * 8 / (self.bandwidth_mbps * 1e6)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description for results files."""
        return {
            "name": self.name,
            "rtt_ms": self.rtt_ms,
            "jitter_ms": self.jitter_ms,
            "bandwidth_mbps": self.bandwidth_mbps,
            "fail_rate": self.fail_rate,
            "fail_mode": self.fail_mode,
        }


def _check_number(key: str, value: object, low: float, high: float) -> None:
    # bool is an int subclass; `rtt_ms = true` in a TOML file is a mistake, not 1 ms.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, value, f"a number from {low:g} to {high:g}")
    number = float(cast(float, value))
    if not math.isfinite(number) or not low <= number <= high:
        raise _fail(key, value, f"a number from {low:g} to {high:g}")


PRESETS: Mapping[str, NetworkProfile] = {
    p.name: p
    for p in (
        # Nothing added: the proxy only counts requests.
        NetworkProfile(name="loopback"),
        # A backend in the same cloud region as its bucket: S3 answers small requests in
        # roughly 10-30 ms; 20 ms round trip with a few ms of jitter sits in the middle.
        NetworkProfile(name="same-region", rtt_ms=20.0, jitter_ms=4.0),
        # A laptop or backend on another continent/region from the bucket (e.g. Europe to
        # us-east-1 is 80-90 ms); jitter grows with the path length.
        NetworkProfile(name="cross-region", rtt_ms=80.0, jitter_ms=8.0),
    )
}
# No preset sets a bandwidth: S3 throughput varies by object size and parallelism far
# more than by distance, and a cap would mix a second effect into latency figures.
