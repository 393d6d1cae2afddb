"""What the router answers with: a whole answer, or a stream that has started, each beside
the route that produced it.

A stream's route is known only once its first chunk is in (the router commits to a target
then), so a routed stream is opened before it is returned: a failure before the first chunk
is an ordinary error of the call, and the chunks that follow are one typed stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from gateway.errors import UpstreamError
from gateway.routing.failover import Route

_T = TypeVar("_T")
_C = TypeVar("_C")


@dataclass(slots=True)
class Routed(Generic[_T]):
    """A whole answer and its route."""

    response: _T
    route: Route


@dataclass(slots=True)
class RoutedStream(Generic[_C]):
    """A stream whose first chunk has arrived: the route that answered and the chunks (the
    first one included). Whoever takes it reads `chunks` to the end or closes it."""

    route: Route
    chunks: AsyncGenerator[_C, None]

    async def aclose(self) -> None:
        """Stop the stream (and so the upstream call) early; harmless once it has ended."""
        await self.chunks.aclose()


async def open_routed(items: AsyncGenerator[Route | _C, None]) -> RoutedStream[_C]:
    """Start a stream that sends its Route before its first chunk and split the route off.

    That is how a stream crosses a process boundary (a Serve handle yields items of one
    sequence); here, and only here, the route leaves the sequence. Raises what the stream
    raised before its route: no target could start it.
    """
    try:
        first = await anext(items)
    except StopAsyncIteration:
        raise UpstreamError("the router ended the stream before it started") from None
    except BaseException:
        await items.aclose()
        raise
    if not isinstance(first, Route):
        await items.aclose()
        raise UpstreamError("the router sent a chunk before its route")
    # Every item after the route is a chunk: the sequence is typed from here on.
    return RoutedStream(first, cast(AsyncGenerator[_C, None], items))


async def in_band(stream: RoutedStream[_C]) -> AsyncGenerator[Route | _C, None]:
    """The inverse of `open_routed`: the route, then the chunks, as one sequence (what a
    Serve deployment yields through its handle)."""
    try:
        yield stream.route
        async for chunk in stream.chunks:
            yield chunk
    finally:
        await stream.aclose()
