"""A2A's JSON-RPC wire, as far as the gateway reads it: the request envelope, the methods it
forwards, the errors it answers with, and the text parts of messages, tasks and artifacts.

The gateway relays A2A payloads without re-encoding them through the SDK's protobuf types, so
that fields a newer agent or client adds pass untouched; what it reads and changes is the text
of every part (`{"text": ...}`, v1.0; `{"kind": "text", "text": ...}`, v0.3), wherever a
`parts` list sits (a message, a task's status message and history, an artifact, a streamed
update).

Method names: A2A 1.0 (`a2a-sdk` 1.x) names them after its gRPC service (`SendMessage`,
`SendStreamingMessage`, `GetTask`, `CancelTask`, `SubscribeToTask`); 0.3 agents use
`message/send`, `message/stream`, `tasks/get`, `tasks/cancel`, `tasks/resubscribe`. Both are
forwarded as sent.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Literal

JsonObject = dict[str, Any]
Kind = Literal["send", "stream", "get", "cancel", "subscribe"]

METHODS: dict[str, Kind] = {
    "SendMessage": "send",
    "SendStreamingMessage": "stream",
    "GetTask": "get",
    "CancelTask": "cancel",
    "SubscribeToTask": "subscribe",
    "message/send": "send",
    "message/stream": "stream",
    "tasks/get": "get",
    "tasks/cancel": "cancel",
    "tasks/resubscribe": "subscribe",
}
"""The methods the gateway forwards, by what they do."""

# Methods A2A defines that the gateway does not forward, and why (see `refused_method`).
_PUSH = "push notifications would reach the caller from the agent, past the gateway"
REFUSED: dict[str, str] = {
    "ListTasks": "it lists the tasks of every caller of the agent",
    "tasks/list": "it lists the tasks of every caller of the agent",
    "GetExtendedAgentCard": "the gateway serves the agent's public card only",
    "agent/getAuthenticatedExtendedCard": "the gateway serves the agent's public card only",
    "CreateTaskPushNotificationConfig": _PUSH,
    "GetTaskPushNotificationConfig": _PUSH,
    "ListTaskPushNotificationConfigs": _PUSH,
    "DeleteTaskPushNotificationConfig": _PUSH,
    "tasks/pushNotificationConfig/set": _PUSH,
    "tasks/pushNotificationConfig/get": _PUSH,
    "tasks/pushNotificationConfig/list": _PUSH,
    "tasks/pushNotificationConfig/delete": _PUSH,
}

# Where a send carries a push notification configuration (1.0's name, 0.3's).
_PUSH_CONFIGS = frozenset({"taskPushNotificationConfig", "pushNotificationConfig"})

# JSON-RPC's own codes, and A2A's.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
TASK_NOT_FOUND = -32001
PUSH_NOT_SUPPORTED = -32003
UNSUPPORTED_OPERATION = -32004
# The gateway's own, from the top of JSON-RPC's server-error range (A2A's grow from -32001).
POLICY_BLOCKED = -32090
RATE_LIMITED = -32091
UPSTREAM_FAILED = -32092
UPSTREAM_TIMEOUT = -32093
UNAVAILABLE = -32094

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
FINAL_STATES = frozenset(
    {"completed", "failed", "canceled", "rejected", "input-required", "auth-required"}
)


class RpcError(Exception):
    """A JSON-RPC error the gateway answers with (HTTP 200, as JSON-RPC over HTTP does)."""

    def __init__(self, code: int, message: str, reason: str, *, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason  # the gateway's error code, e.g. policy_violation
        self.data = data


@dataclass(frozen=True, slots=True)
class RpcRequest:
    """A JSON-RPC request the gateway will forward: its id, method, kind and params."""

    id: str | int | None
    method: str
    kind: Kind
    params: JsonObject

    def body(self, params: JsonObject | None = None) -> JsonObject:
        """The request as sent on (with `params` in place of its own when given)."""
        return {
            "jsonrpc": "2.0",
            "id": self.id,
            "method": self.method,
            "params": self.params if params is None else params,
        }

    def message(self) -> JsonObject | None:
        """A send's message (None for the task methods)."""
        message = self.params.get("message")
        return message if isinstance(message, dict) else None

    def task_id(self) -> str | None:
        """The task the call names: a task method's `id`, a send's `taskId`."""
        if self.kind in ("get", "cancel", "subscribe"):
            value = self.params.get("id")
        else:
            value = (self.message() or {}).get("taskId")
        return value if isinstance(value, str) and value else None


def request_id_of(raw: bytes) -> str | int | None:
    """The id of a body that may not be a valid request (for its error answer)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return _valid_id(body.get("id")) if isinstance(body, dict) else None


def parse_request(raw: bytes) -> RpcRequest:
    """A JSON-RPC 2.0 request of a method the gateway forwards, or the RpcError to answer."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RpcError(PARSE_ERROR, f"Parse error: {exc}", "parse_error") from None
    if not isinstance(body, dict):
        raise RpcError(
            INVALID_REQUEST,
            "Invalid Request: expected one JSON-RPC request object (batches are not supported).",
            "invalid_request",
        )
    if body.get("jsonrpc") != "2.0":
        raise RpcError(
            INVALID_REQUEST, "Invalid Request: 'jsonrpc' must be \"2.0\".", "invalid_request"
        )
    if "id" in body and _valid_id(body["id"]) is None and body["id"] is not None:
        raise RpcError(
            INVALID_REQUEST,
            "Invalid Request: 'id' must be a string, an integer or null.",
            "invalid_request",
        )
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise RpcError(
            INVALID_REQUEST, "Invalid Request: 'method' must be a string.", "invalid_request"
        )
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise RpcError(
            INVALID_PARAMS, "Invalid params: 'params' must be an object.", "invalid_params"
        )
    kind = METHODS.get(method)
    if kind is None:
        raise refused_method(method)
    request = RpcRequest(_valid_id(body.get("id")), method, kind, params)
    if kind in ("send", "stream"):
        configuration = params.get("configuration")
        if isinstance(configuration, dict) and _PUSH_CONFIGS & configuration.keys():
            raise RpcError(
                PUSH_NOT_SUPPORTED,
                f"A push notification configuration is not accepted through the gateway: {_PUSH}.",
                "method_not_forwarded",
            )
        message = request.message()
        if message is None or not isinstance(message.get("parts"), list):
            raise RpcError(
                INVALID_PARAMS,
                "Invalid params: 'message' with its 'parts' is required.",
                "invalid_params",
            )
    elif not isinstance(params.get("id"), str):
        raise RpcError(
            INVALID_PARAMS, "Invalid params: the task 'id' is required.", "invalid_params"
        )
    return request


def refused_method(method: str) -> RpcError:
    """The error for a method the gateway does not forward."""
    why = REFUSED.get(method)
    if why is None:
        return RpcError(METHOD_NOT_FOUND, f"Method not found: {method!r}.", "method_not_found")
    code = PUSH_NOT_SUPPORTED if why == _PUSH else UNSUPPORTED_OPERATION
    return RpcError(
        code, f"{method} is not available through the gateway: {why}.", "method_not_forwarded"
    )


def error_body(
    request_id: str | int | None, code: int, message: str, metadata: dict[str, str]
) -> JsonObject:
    """A JSON-RPC error response; `metadata` travels as a google.rpc.ErrorInfo, as A2A 1.0
    details its own errors."""
    info = {
        "@type": ERROR_INFO,
        "reason": metadata.get("code", "error").upper(),
        "domain": "raygate",
        "metadata": metadata,
    }
    error = {"code": code, "message": message, "data": [info]}
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def text_parts(payload: Any) -> list[JsonObject]:
    """Every text part in `payload` (a message, a task, an event, a result), in document
    order: the dicts themselves, so that setting their `text` changes `payload`."""
    found: list[JsonObject] = []
    _collect(payload, found)
    return found


def with_texts(payload: Any, change: Any) -> Any:
    """A deep copy of `payload` with each text part's text replaced by `change(texts)`'s
    item at its position (`change` takes and returns the list of texts)."""
    copied = copy.deepcopy(payload)
    parts = text_parts(copied)
    texts = change([p["text"] for p in parts])
    for part, text in zip(parts, texts, strict=True):
        part["text"] = text
    return copied


def task_id_of(result: Any) -> str | None:
    """The task a result or streamed event concerns, when it names one."""
    if not isinstance(result, dict):
        return None
    task = result.get("task")
    if isinstance(task, dict) and isinstance(task.get("id"), str):
        return str(task["id"])
    for key in ("statusUpdate", "artifactUpdate", "message"):
        inner = result.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("taskId"), str):
            return str(inner["taskId"])
    if result.get("kind") == "task" or ("status" in result and "id" in result):
        return str(result["id"]) if isinstance(result.get("id"), str) else None
    value = result.get("taskId")
    return value if isinstance(value, str) else None


def is_final(result: Any) -> bool:
    """Whether a streamed event ends its stream: a message, or a task (or status update) in a
    terminal or interrupted state (A2A 1.0 `TASK_STATE_COMPLETED`, 0.3 `completed`)."""
    if not isinstance(result, dict):
        return False
    if "message" in result or result.get("kind") == "message":
        return True
    if result.get("final") is True:  # 0.3's status-update-event
        return True
    for holder in (result.get("task"), result.get("statusUpdate"), result):
        if isinstance(holder, dict) and isinstance(holder.get("status"), dict):
            state = str(holder["status"].get("state", ""))
            if _state(state) in FINAL_STATES:
                return True
    return False


def _state(state: str) -> str:
    return state.lower().removeprefix("task_state_").replace("_", "-")


def _collect(value: Any, found: list[JsonObject]) -> None:
    if isinstance(value, list):
        for item in value:
            _collect(item, found)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "parts" and isinstance(item, list):
                found += [p for p in item if isinstance(p, dict) and isinstance(p.get("text"), str)]
            else:
                _collect(item, found)


def _valid_id(value: Any) -> str | int | None:
    # bool is an int to Python, not to JSON-RPC.
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value
