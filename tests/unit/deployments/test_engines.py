"""`ServeEngines` when a local model's replica dies under a call: sent again, as on the
router and cache hops (tests/unit/deployments/test_handles.py), a stream only before its first
chunk. Handles stand in for Serve's (their calls fail as a dead replica's do); the replica
counts the controller would report are given."""

from __future__ import annotations

from typing import Any

import pytest
from ray.exceptions import ActorDiedError

from deployments.engines import ServeEngines
from deployments.handles import ATTEMPTS
from gateway.errors import UpstreamUnavailable
from gateway.protocol.openai import ChatCompletionRequest
from tests.unit.deployments.fakes import Items

pytestmark = pytest.mark.asyncio

REQUEST = ChatCompletionRequest.model_validate(
    {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
)


class Response:
    """What `handle.method.remote()` returns: awaited once, cancellable."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def __await__(self) -> Any:
        return self._result().__await__()

    async def _result(self) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def cancel(self) -> None:
        pass


class Method:
    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes, self.sent = outcomes, 0

    def remote(self, request: Any) -> Any:
        self.sent += 1
        outcome = self.outcomes.pop(0)
        return outcome if isinstance(outcome, Items) else Response(outcome)


class Handle:
    """A DeploymentHandle whose `chat` and `chat_stream` calls end with `outcomes` in turn."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.chat = self.chat_stream = Method(outcomes)

    def options(self, stream: bool = False) -> Handle:
        return self


class Engines(ServeEngines):
    def _replicas_running(self) -> dict[str, int]:
        return {"tiny": 2}


def _engines(handle: Handle) -> Engines:
    return Engines({"tiny": handle}, app="raygate", deployments={"tiny": "LocalModel:tiny"})  # type: ignore[dict-item]


async def test_a_call_whose_replica_died_is_sent_again() -> None:
    handle = Handle([ActorDiedError(), "answer"])
    engines = _engines(handle)
    try:
        assert await engines.chat(REQUEST) == "answer"
    finally:
        await engines.aclose()
    assert handle.chat.sent == 2


async def test_a_replica_lost_on_every_send_is_a_503() -> None:
    handle = Handle([ActorDiedError() for _ in range(ATTEMPTS)])
    engines = _engines(handle)
    try:
        with pytest.raises(UpstreamUnavailable, match="replica died"):
            await engines.chat(REQUEST)
    finally:
        await engines.aclose()
    assert handle.chat.sent == ATTEMPTS


async def test_an_error_the_replica_raised_is_not_sent_again() -> None:
    handle = Handle([UpstreamUnavailable("engine busy"), "answer"])
    engines = _engines(handle)
    try:
        with pytest.raises(UpstreamUnavailable, match="engine busy"):
            await engines.chat(REQUEST)
    finally:
        await engines.aclose()
    assert handle.chat.sent == 1


async def test_a_stream_is_sent_again_only_before_its_first_chunk() -> None:
    handle = Handle([Items([], failure=ActorDiedError()), Items(["a", "b"])])
    engines = _engines(handle)
    try:
        assert [c async for c in engines.chat_stream(REQUEST)] == ["a", "b"]
        assert handle.chat.sent == 2

        handle.chat.outcomes = [Items(["a"], cut=ActorDiedError()), Items(["never"])]
        seen: list[str] = []
        with pytest.raises(UpstreamUnavailable, match="replica died"):
            async for chunk in engines.chat_stream(REQUEST):
                seen.append(chunk)
    finally:
        await engines.aclose()
    assert seen == ["a"] and handle.chat.sent == 3
