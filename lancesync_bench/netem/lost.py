"""Lost answers: make a boto3 client lose the answer to (or the whole of) chosen requests.

The proxy can reset a connection, but not at a chosen step of a push. This hooks a real
boto3 client through botocore's event system instead: a request armed with
``"answer"`` reaches the S3 server and is carried out there, then the client sees a
dropped connection, as when a response is lost on the way back (after botocore's own
retries, which these hooks bypass); one armed with ``"request"`` never leaves the client;
one armed with ``"torn"`` is an upload cut short: the server is left holding an empty
object with the request's metadata (what SeaweedFS keeps when a client is killed mid-PUT;
S3 itself keeps nothing) and the client sees a dropped connection. The S3 server and
everything it stores stay real.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LostAnswers"]

What = Literal["answer", "request", "torn"]


@dataclass(frozen=True)
class _Fault:
    operation: str  # botocore operation name, e.g. "PutObject"
    key_part: str  # armed for the next request whose key contains this
    what: What


class LostAnswers:
    """Arm faults on ``client`` (a boto3 S3 client); each fires once, on the next request
    of its operation whose key contains its ``key_part``. ``hits`` records what fired."""

    OPERATIONS = ("PutObject", "GetObject", "HeadObject", "ListObjectsV2")

    def __init__(self, client: Any) -> None:
        self._armed: list[_Fault] = []
        self._lock = threading.Lock()  # boto3 calls run in worker threads
        self.hits: list[str] = []
        events = client.meta.events
        for op in self.OPERATIONS:
            events.register(f"before-parameter-build.s3.{op}", _note_key)
            events.register(f"before-call.s3.{op}", self._hook(op, "request"))
            events.register(f"after-call.s3.{op}", self._hook(op, "answer"))
        events.register("before-call.s3.PutObject", self._tear(client))
        from lancesync_bench.s3.fast import fast_client

        fast = fast_client(client)
        if fast is not None:  # the lean client that sends a sync's small requests
            fast.hooks.append(self._lean_hook(client))

    def lose(self, operation: str, key_part: str, what: What = "answer") -> None:
        """Arm one fault."""
        if operation not in self.OPERATIONS:
            raise ValueError(f"operation {operation!r}; allowed: {', '.join(self.OPERATIONS)}")
        with self._lock:
            self._armed.append(_Fault(operation, key_part, what))

    @property
    def armed(self) -> int:
        """How many armed faults have not fired yet."""
        with self._lock:
            return len(self._armed)

    def disarm(self) -> None:
        """Drop every fault that has not fired."""
        with self._lock:
            self._armed.clear()

    def _take(self, op: str, key: str, what: What) -> bool:
        with self._lock:
            for fault in self._armed:
                if fault.operation == op and fault.key_part in key and fault.what == what:
                    self._armed.remove(fault)
                    self.hits.append(f"{op} {what} {key}")
                    return True
        return False

    def _hook(self, op: str, what: What) -> Callable[..., None]:
        from botocore.exceptions import ConnectionClosedError

        def handler(context: dict[str, Any], **_: Any) -> None:
            if self._take(op, context.get("lost_answers_key", ""), what):
                raise ConnectionClosedError(endpoint_url=f"{what} lost (injected)")

        return handler

    def _lean_hook(self, client: Any) -> Callable[[str, str, dict[str, Any]], None]:
        """The same faults on the lean client's requests (:mod:`lancesync_bench.s3.fast`)."""
        from botocore.exceptions import ConnectionClosedError

        def hook(op: str, phase: str, params: dict[str, Any]) -> None:
            key = _key_of(params)
            if phase == "request" and op == "PutObject" and self._take(op, key, "torn"):
                _cut_short(client, params["Bucket"], key, params.get("Metadata", {}))
            if phase in ("request", "answer") and self._take(op, key, phase):  # type: ignore[arg-type]
                raise ConnectionClosedError(endpoint_url=f"{phase} lost (injected)")

        return hook

    def _tear(self, client: Any) -> Callable[..., None]:
        def handler(context: dict[str, Any], **_: Any) -> None:
            key = context.get("lost_answers_key", "")
            if self._take("PutObject", key, "torn"):
                _cut_short(
                    client,
                    context["lost_answers_bucket"],
                    key,
                    context.get("lost_answers_metadata", {}),
                )

        return handler


def _key_of(params: dict[str, Any]) -> str:
    return str(params.get("Key", params.get("Prefix", "")))


def _cut_short(client: Any, bucket: str, key: str, metadata: dict[str, str]) -> None:
    """Leave what a server keeps of an upload cut short (an empty object with the request's
    metadata), then fail as the client would (see the module)."""
    from botocore.exceptions import ConnectionClosedError

    client.put_object(Bucket=bucket, Key=key, Body=b"", Metadata=metadata)
    raise ConnectionClosedError(endpoint_url="upload cut short (injected)")


def _note_key(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["lost_answers_key"] = _key_of(params)
    context["lost_answers_bucket"] = params.get("Bucket", "")
    context["lost_answers_metadata"] = dict(params.get("Metadata") or {})
