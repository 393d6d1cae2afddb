"""The HTTP API clients see: OpenAI routes, Anthropic Messages, health and admin."""

from gateway.api.app import create_api
from gateway.api.backend import Backend

__all__ = ["Backend", "create_api"]
