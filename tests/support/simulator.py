"""The upstream simulator in tests: one harness for every suite.

In-process (`httpx.ASGITransport`) for most tests (`Sim`, `provider_for`); a loopback uvicorn
server (`serve`) for what an in-process transport cannot express (a dropped connection). The
simulator's control API (`/_sim/...`) queues faults and reports what it received.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from gateway.config import ProviderConfig
from gateway.protocol.openai import ChatCompletionChunk
from gateway.providers.base import Provider
from gateway.providers.registry import build_provider
from gateway.simulator import SimulatorSettings, create_app


class Sim:
    """The simulator app in-process (`httpx.ASGITransport`), with its control API."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.app = create_app(settings or SimulatorSettings(seed=1))
        self.transport = httpx.ASGITransport(app=self.app)
        self.control = httpx.AsyncClient(transport=self.transport, base_url="http://sim")

    async def fault(self, **fault: Any) -> None:
        """Queue one fault (see gateway.simulator.faults.Fault)."""
        (await self.control.post("/_sim/faults", json={"faults": [fault]})).raise_for_status()

    async def clear_faults(self) -> None:
        """Drop every queued fault."""
        (await self.control.delete("/_sim/faults")).raise_for_status()

    async def requests(self) -> list[dict[str, Any]]:
        """Every request the simulator received, oldest first."""
        return list((await self.control.get("/_sim/requests")).json()["requests"])

    async def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the completion requests it received, oldest first."""
        return [r["json"] for r in await self.requests() if r["json"]]

    async def models_asked(self) -> list[str]:
        """The model of every completion request the simulator received, oldest first."""
        return [body["model"] for body in await self.bodies()]

    async def aclose(self) -> None:
        await self.control.aclose()


def provider_for(
    app: Starlette, kind: str, *, base_url: str = "http://sim", **config: Any
) -> Provider:
    """An adapter of `kind` whose upstream is the simulator `app`, in process."""
    return build_provider(
        f"sim-{kind}",
        ProviderConfig.model_validate(
            {"kind": kind, "base_url": base_url, "api_key": "sk-test", **config}
        ),
        transport=httpx.ASGITransport(app=app),
    )


async def control(app_or_url: Starlette | str, method: str, path: str, **kwargs: Any) -> Any:
    """Call the simulator's control API (in process, or at a server's URL)."""
    if isinstance(app_or_url, str):
        client = httpx.AsyncClient(base_url=app_or_url)
    else:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app_or_url), base_url="http://sim"
        )
    async with client:
        response = await client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()


async def add_faults(app_or_url: Starlette | str, *faults: dict[str, Any]) -> None:
    """Queue faults for the next matching requests."""
    await control(app_or_url, "POST", "/_sim/faults", json={"faults": list(faults)})


async def received(app_or_url: Starlette | str) -> list[dict[str, Any]]:
    """The requests the simulator received, oldest first."""
    return list((await control(app_or_url, "GET", "/_sim/requests"))["requests"])


async def collect(stream: AsyncIterator[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    """Every chunk of a stream."""
    return [chunk async for chunk in stream]


def streamed_text(chunks: list[ChatCompletionChunk]) -> str:
    """The content deltas of choice 0, joined."""
    return "".join(
        choice.delta.content or ""
        for chunk in chunks
        for choice in chunk.choices
        if choice.index == 0
    )


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Serve `app` with uvicorn on a loopback port in a thread; yields its base URL.

    The socket is bound and listening before the server starts, so connections made at
    once wait in the backlog instead of racing the server's start.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
