"""The simulator's ASGI app: OpenAI (chat and Responses), Anthropic, Gemini, Azure OpenAI,
Bedrock, Vertex AI and Cohere routes, their token endpoints, plus the control API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from gateway.simulator import (
    anthropic_api,
    azure_api,
    bedrock_api,
    cohere_api,
    control,
    gemini_api,
    oauth,
    openai_api,
    responses_api,
    vertex_api,
)
from gateway.simulator.faults import silence_cut_tracebacks
from gateway.simulator.settings import SimulatorSettings
from gateway.simulator.state import SimulatorState
from gateway.simulator.wire import RAW_SEND_SCOPE_KEY


class _SimulatorApp(Starlette):
    """Starlette that keeps the server's own `send` in the scope, so a `cut` fault can
    reach the connection's transport past the middleware wrappers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[RAW_SEND_SCOPE_KEY] = send
        await super().__call__(scope, receive, send)


def create_app(settings: SimulatorSettings | None = None) -> Starlette:
    """Build a simulator app; its runtime state (faults, log, counters) is `app.state.sim`.

    Also hides, in uvicorn's error log, the tracebacks that injected `cut` faults cause.
    """
    settings = settings or SimulatorSettings()
    app = _SimulatorApp(
        routes=[
            *openai_api.routes,
            *responses_api.routes,
            *anthropic_api.routes,
            *gemini_api.routes,
            *azure_api.routes,
            *bedrock_api.routes,
            *vertex_api.routes,
            *cohere_api.routes,
            *oauth.routes,
            *control.routes,
        ]
    )
    app.state.sim = SimulatorState(settings)
    silence_cut_tracebacks()
    return app
