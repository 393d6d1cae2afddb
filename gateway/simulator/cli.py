"""`raygate simulate`: run the simulator under uvicorn."""

from __future__ import annotations

import argparse
import importlib.util
import socket
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from gateway.simulator.app import create_app
from gateway.simulator.faults import Fault
from gateway.simulator.settings import SimulatorSettings


def parse_args(argv: list[str] | None = None) -> SimulatorSettings:
    """Settings from command-line arguments (see `raygate simulate --help`)."""
    defaults = SimulatorSettings()
    parser = argparse.ArgumentParser(
        prog="raygate simulate",
        description="Serve a simulated OpenAI / Anthropic / Gemini / Azure OpenAI / Bedrock / "
        "Vertex AI / Cohere upstream.",
    )
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms)
    parser.add_argument("--latency-jitter-ms", type=float, default=defaults.latency_jitter_ms)
    parser.add_argument("--tokens-per-s", type=float, default=defaults.tokens_per_s)
    parser.add_argument("--answer-words", type=int, default=defaults.answer_words)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--embedding-dim", type=int, default=defaults.embedding_dim)
    parser.add_argument(
        "--answer-book", type=Path, default=None, help="JSON file of fixed answers per conversation"
    )
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        help="model id listed by /v1/models (repeatable; default: a few well-known ids)",
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        type=_fault,
        default=[],
        help='a fault as JSON, e.g. \'{"kind":"status","status":503,"count":null}\' (repeatable)',
    )
    args = vars(parser.parse_args(argv))
    if args["models"] is None:
        del args["models"]
    try:
        return SimulatorSettings(**args)
    except ValidationError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until interrupted; prints one line once it is listening.

    Returns 0 after Ctrl-C (SIGINT); SIGTERM ends the process by that signal, as uvicorn does.
    """
    settings = parse_args(argv)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop" if _importable("uvloop") else "asyncio",
        http="httptools" if _importable("httptools") else "h11",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = _AnnouncingServer(config)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled gracefully
        return 0
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        return exc.code if isinstance(exc.code, int) and exc.code else 1
    return 0 if server.started else 1


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints where it listens once its sockets are bound."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"raygate simulator listening on http://{host}:{port}", flush=True)


def _fault(text: str) -> Fault:
    try:
        return Fault.model_validate_json(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"invalid fault {text!r}: {exc}") from exc


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
