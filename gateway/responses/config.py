"""The `responses` section of the gateway's configuration: stored responses of the Responses
API (`previous_response_id`, `GET` / `DELETE /v1/responses/{id}`)."""

from __future__ import annotations

from pydantic import Field

from gateway.section import ConfigSection


class ResponsesConfig(ConfigSection):
    """How long stored responses are kept, and how many per caller.

    A response is stored unless the request says `store: false`; with `store: false` here,
    or when the audit trail keeps no prompts (`audit.prompt: none`), nothing is stored: a
    request that asks for `store: true` is refused with a 400 naming `store`.
    """

    store: bool = Field(True, description="keep responses for previous_response_id / retrieval")
    ttl_s: float = Field(
        30 * 24 * 3600.0, gt=0, description="seconds a stored response is kept (OpenAI: 30 days)"
    )
    max_per_user: int = Field(
        1000, ge=1, description="stored responses per caller at most; the oldest go first"
    )
    max_chain: int = Field(
        100, ge=1, description="previous_response_id links followed at most (a longer chain: 400)"
    )
