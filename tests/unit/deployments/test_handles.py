"""What a failed call through a DeploymentHandle means: a lost replica is a call sent again
(a stream only before its first item), anything else maps once, as it was raised."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from deployments.handles import ATTEMPTS, failure, replica_lost, resent, started
from gateway.errors import InvalidRequest, UpstreamUnavailable
from tests.unit.deployments.fakes import Items

WHERE = "the gateway's router"


class Sends:
    """A call that fails with each of `failures` in turn, then answers."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.sent = 0

    async def __call__(self) -> str:
        self.sent += 1
        if self.failures:
            raise self.failures.pop(0)
        return "answer"


def test_a_lost_replica_is_told_from_an_error_the_replica_raised() -> None:
    assert replica_lost(ActorDiedError())
    assert replica_lost(ActorUnavailableError("unreachable", b"0" * 16))
    assert not replica_lost(InvalidRequest("bad"))
    assert not replica_lost(RuntimeError("boom"))


def test_a_call_whose_replica_died_is_sent_again_and_answered() -> None:
    sends = Sends(ActorDiedError(), ActorUnavailableError("unreachable", b"0" * 16))
    assert asyncio.run(resent(sends, WHERE)) == "answer"
    assert sends.sent == 3


def test_a_replica_lost_on_every_attempt_is_a_503_naming_the_hop() -> None:
    sends = Sends(*(ActorDiedError() for _ in range(ATTEMPTS)))
    with pytest.raises(UpstreamUnavailable, match="router: its replica died"):
        asyncio.run(resent(sends, WHERE))
    assert sends.sent == ATTEMPTS


def test_an_error_the_replica_raised_is_not_sent_again() -> None:
    sends = Sends(InvalidRequest("bad request"))
    with pytest.raises(InvalidRequest):
        asyncio.run(resent(sends, WHERE))
    assert sends.sent == 1


async def _drain(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


def test_a_stream_whose_replica_died_before_its_first_item_is_sent_again() -> None:
    tries = [Items([], failure=ActorDiedError()), Items(["route", "a", "b"])]
    sent = iter(tries)

    async def run() -> list[Any]:
        return await _drain(await started(lambda: next(sent), WHERE))

    assert asyncio.run(run()) == ["route", "a", "b"]
    assert tries[0].cancelled and tries[1].cancelled  # each call is closed in the replica


def test_a_stream_cut_after_its_first_item_ends_with_the_error_not_a_clean_end() -> None:
    sent = [Items(["route", "a"], cut=ActorDiedError())]

    async def run() -> list[Any]:
        got: list[Any] = []
        items = await started(lambda: sent.pop(0), WHERE)
        with pytest.raises(UpstreamUnavailable):
            async for item in items:
                got.append(item)
        return got

    assert asyncio.run(run()) == ["route", "a"]  # and not sent again: `sent` had one call


def test_a_stream_whose_client_went_away_before_its_first_item_is_closed_in_the_replica() -> None:
    waiting = Items(["never"])

    async def run() -> None:
        asked = asyncio.Event()

        async def never(items: Any) -> Any:
            asked.set()
            await asyncio.Event().wait()  # the first item has not come when the client leaves

        call = asyncio.ensure_future(started(lambda: waiting, WHERE, first_of=never))
        await asked.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(run())
    assert waiting.cancelled


def test_failure_keeps_a_gateway_error_and_maps_the_rest() -> None:
    kept = InvalidRequest("bad")
    assert failure(kept, WHERE) is kept
    assert isinstance(failure(ActorDiedError(), WHERE), UpstreamUnavailable)
