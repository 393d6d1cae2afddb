"""`POST /admin/policy/check`: the input policy's decision on one text, explained, without
calling any provider (a dry run for whoever writes the policy file)."""

from __future__ import annotations

import asyncio
from typing import Literal

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.admin import AdminGate
from gateway.api.embedding import Embed
from gateway.api.errors import validated
from gateway.api.input_policy import PREPARE_TIMEOUT_S
from gateway.api.openapi import answers, request_body
from gateway.errors import InvalidRequest
from gateway.identity.principal import Principal
from gateway.identity.service import Identity
from gateway.policy.engine import PolicyEngine


class PolicyCheck(BaseModel):
    """Body of `POST /admin/policy/check`: a dry run of the policy on one text."""

    model_config = ConfigDict(extra="forbid")

    text: str
    user: str | None = None
    groups: list[str] = Field(default_factory=list)
    model: str | None = Field(None, description="applies the profile's per-model overrides")
    direction: Literal["input", "output"] = "input"


def policy_routes(
    gate: AdminGate,
    engine: PolicyEngine | None,
    embed: Embed | None,
    identity: Identity,
) -> APIRouter:
    """The policy dry-run route (admin credentials only)."""
    router = APIRouter()

    @router.post(
        "/admin/policy/check", openapi_extra=request_body(PolicyCheck), responses=answers(None)
    )
    async def policy_check(request: Request) -> Response:
        await gate(request, "policy.check")
        if engine is None:
            raise InvalidRequest("The policy engine is off (policy.enabled).", code="policy_off")
        body = validated(PolicyCheck, await request.body())
        caller = Principal(body.user or "dry-run", "admin_dry_run", groups=tuple(body.groups))
        profile = identity.grant(caller).policy
        verdict = await asyncio.to_thread(engine.check, [body.text], profile, model=body.model)
        embedding, unavailable = await _embedding(engine, embed, verdict.texts[0])
        engine.judge(verdict, embedding, text=verdict.texts[0], unavailable=unavailable)
        return JSONResponse(
            {
                "direction": body.direction,
                "profile": profile or engine.config.default_profile,
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
                "topics": [
                    {
                        "topic": t.topic,
                        "score": round(t.score, 4),
                        "threshold": t.threshold,
                        "nearest": t.nearest,
                        "keyword": t.keyword,
                    }
                    for t in verdict.topics
                ],
                "embedding_checks": verdict.embedding_checks,
                "redacted_text": verdict.texts[0] if verdict.action == "redact" else None,
                "latency_ms": round(verdict.latency_ms, 3),
            }
        )

    return router


async def _embedding(
    engine: PolicyEngine, embed: Embed | None, text: str
) -> tuple[np.ndarray | None, str | None]:
    if embed is None:
        return None, "no embedder configured"
    try:
        await asyncio.wait_for(engine.prepare(embed), PREPARE_TIMEOUT_S)
        return (await embed([text]))[0], None
    except Exception as exc:  # the dry run reports what it could not check
        return None, f"the embedder failed ({type(exc).__name__})"
