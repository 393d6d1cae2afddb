"""A real A2A agent for tests, built with the official `a2a-sdk` server: it echoes the text it
received, as a task that streams a working status, the echo as an artifact in two chunks, and
a completed status; and it keeps what reached it (texts and HTTP headers) for tests to read.

    with running_agent() as agent:         # uvicorn on a free loopback port, in a thread
        agent.url, agent.received

Its JSON-RPC endpoint is at `/`, its card at `/.well-known/agent-card.json`. Under `/cut/` the
same endpoint answers a stream with its first event and then drops the connection (an agent
that dies mid-stream); a text holding "hold" keeps its task working until `release` is set.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks.inmemory_task_store import InMemoryTaskStore
from a2a.server.tasks.task_updater import TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
)
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.support import free_port

HOLD_S = 30.0  # how long a "hold" task waits for `release` at most


@dataclass
class Received:
    """One call as the agent saw it."""

    text: str
    headers: dict[str, str]


@dataclass
class EchoAgent:
    """A running agent: where it listens and what reached it."""

    url: str
    received: list[Received] = field(default_factory=list)
    card_fetches: int = 0  # GETs of its card
    release: threading.Event = field(default_factory=threading.Event)


class _Echo(AgentExecutor):
    def __init__(self, agent: EchoAgent) -> None:
        self._agent = agent

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        headers = dict(context.call_context.state.get("headers", {}))
        self._agent.received.append(Received(text, headers))
        assert context.message is not None
        task = context.current_task or new_task_from_user_message(context.message)
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work(new_text_message(f"working on: {text}"))
        if "hold" in text:
            released = await asyncio.to_thread(self._agent.release.wait, HOLD_S)
            assert released, "the test never released the held task"
        half = len(text) // 2
        artifact_id = "echo"
        await updater.add_artifact([new_text_part(f"echo: {text[:half]}")], artifact_id, "echo")
        await updater.add_artifact(
            [new_text_part(text[half:])], artifact_id, "echo", append=True, last_chunk=True
        )
        await updater.complete(new_text_message(f"done: {text}"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        self._agent.release.set()
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def agent_card(url: str) -> AgentCard:
    """The echo agent's card, its JSON-RPC interface at `url`."""
    return AgentCard(
        name="Echo",
        description="Echoes what it is told.",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="echoes", tags=["test"])],
    )


class _CutStreams:
    """Under `/cut/`: the endpoint at `/`, whose event streams are dropped after one event.
    Counts the card's fetches."""

    def __init__(self, app: ASGIApp, agent: EchoAgent) -> None:
        self._app = app
        self._agent = agent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/.well-known/agent-card.json":
            self._agent.card_fetches += 1
        if scope["type"] != "http" or not scope["path"].startswith("/cut/"):
            await self._app(scope, receive, send)
            return
        scope = {**scope, "path": "/", "raw_path": b"/"}
        events = 0

        async def cutting(message: Message) -> None:
            nonlocal events
            if message["type"] == "http.response.body" and message.get("body"):
                events += 1
                if events > 1:
                    raise ConnectionAbortedError("the agent died mid-stream (test fault)")
            await send(message)

        await self._app(scope, receive, cutting)


def build_app(agent: EchoAgent) -> ASGIApp:
    """The agent's ASGI app: its card, its JSON-RPC endpoint, and the `/cut/` fault."""
    card = agent_card(f"{agent.url}/")
    handler = DefaultRequestHandler(
        agent_executor=_Echo(agent), task_store=InMemoryTaskStore(), agent_card=card
    )
    routes = [
        *create_agent_card_routes(card),
        *create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True),
    ]
    return _CutStreams(Starlette(routes=routes), agent)


@contextmanager
def running_agent() -> Iterator[EchoAgent]:
    """The echo agent served by uvicorn on a free loopback port until the block ends."""
    port = free_port()
    agent = EchoAgent(url=f"http://127.0.0.1:{port}")
    config = uvicorn.Config(build_app(agent), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # uvicorn's own flag, set once it listens
        assert thread.is_alive() and time.monotonic() < deadline, "the agent did not start"
        time.sleep(0.02)  # poll interval
    try:
        yield agent
    finally:
        agent.release.set()
        server.should_exit = True
        thread.join(timeout=30)
