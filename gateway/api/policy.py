"""The policy engine on the request path and its dry-run route.

`enforce` runs the caller's profile (from their groups) over a chat request's texts before it
is routed: a `block` is a 403 and nothing goes upstream; a `redact` replaces values with typed
placeholders; every decision lands in the request's audit record. `POST /admin/policy/check`
runs the same decision on one text without calling any provider.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.api.errors import invalid_body, parse_json
from gateway.api.exchange import Exchange
from gateway.errors import InvalidRequest, PolicyViolation
from gateway.identity.principal import Principal
from gateway.protocol.openai import ChatCompletionRequest

if TYPE_CHECKING:
    from gateway.api.app import GatewayAPI


async def enforce(
    api: GatewayAPI, request: Request, body: ChatCompletionRequest
) -> ChatCompletionRequest:
    """The input policy of the caller's profile on a chat request: blocked (403, nothing
    sent upstream), redacted (typed placeholders), or passed as it is; decisions recorded."""
    exchange: Exchange = request.state.exchange
    if api.policy is None or exchange.principal is None:
        return body
    profile = api.identity.grant(exchange.principal).policy
    slots = _text_slots(body)
    verdict = await asyncio.to_thread(api.policy.check, [t for _, t in slots], profile)
    exchange.decisions += verdict.decisions
    if verdict.action == "block":
        rules = ", ".join(verdict.blocking_rules)
        raise PolicyViolation(f"The request was blocked by policy ({rules}).")
    if verdict.action != "redact":
        return body
    return _with_texts(body, [slot for slot, _ in slots], verdict.texts)


def add_policy_routes(app: FastAPI, api: GatewayAPI) -> None:
    """Register `POST /admin/policy/check` on `app`."""

    @app.post("/admin/policy/check")
    async def policy_check(request: Request) -> Response:
        api.admin(request)
        if api.policy is None:
            raise InvalidRequest("The policy engine is off (policy.enabled).", code="policy_off")
        raw = await request.body()
        try:
            body = PolicyCheck.model_validate(parse_json(raw))
        except ValidationError as exc:
            raise invalid_body(exc) from None
        caller = Principal(body.user or "dry-run", "admin_dry_run", groups=tuple(body.groups))
        profile = api.identity.grant(caller).policy
        verdict = await asyncio.to_thread(api.policy.check, [body.text], profile)
        return JSONResponse(
            {
                "direction": body.direction,
                "profile": profile or api.config.policy.default_profile,
                "action": verdict.action,
                "decisions": [d.model_dump(mode="json") for d in verdict.decisions],
                "spans": [
                    {
                        "type": s.type,
                        "start": s.start,
                        "end": s.end,
                        "text": s.text,
                        "confidence": s.confidence,
                        "detector": s.detector,
                    }
                    for s in verdict.spans[0]
                ],
                "jailbreak_score": round(verdict.jailbreak_score, 4),
                "redacted_text": verdict.texts[0] if verdict.action == "redact" else None,
                "latency_ms": round(verdict.latency_ms, 3),
            }
        )


class PolicyCheck(BaseModel):
    """Body of `POST /admin/policy/check`: a dry run of the policy on one text."""

    model_config = ConfigDict(extra="forbid")

    text: str
    user: str | None = None
    groups: list[str] = Field(default_factory=list)
    direction: Literal["input", "output"] = "input"


def _text_slots(body: ChatCompletionRequest) -> list[tuple[tuple[int, int | None], str]]:
    """Each text of a chat request with where it sits: (message, part or None for a string)."""
    slots: list[tuple[tuple[int, int | None], str]] = []
    for i, message in enumerate(body.messages):
        if isinstance(message.content, str):
            slots.append(((i, None), message.content))
        elif message.content is not None:
            for j, part in enumerate(message.content):
                if part.type == "text" and part.text:
                    slots.append(((i, j), part.text))
    return slots


def _with_texts(
    body: ChatCompletionRequest, where: list[tuple[int, int | None]], texts: list[str]
) -> ChatCompletionRequest:
    messages = [m.model_copy(deep=True) for m in body.messages]
    for (i, j), text in zip(where, texts, strict=True):
        if j is None:
            messages[i].content = text
        else:
            parts = messages[i].content
            assert isinstance(parts, list)
            parts[j] = parts[j].model_copy(update={"text": text})
    return body.model_copy(update={"messages": messages})
