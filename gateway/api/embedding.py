"""The request embedding stage: one embedding per request, shared by the policy and the cache.

The embedding is of the request's redacted last user turn (the policy's topic and similarity
rules score it; the cache's semantic phase searches with it). Whichever stage needs it first
computes it: the input policy through the embedder here, or the cache replica during its
lookup (one hop for both), which hands it back. Nothing embeds the same text twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import numpy as np

from gateway.api.exchange import Exchange

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], Awaitable[np.ndarray]]


class RequestEmbedding:
    """Computes (at most once per request) and remembers a request's embedding."""

    def __init__(self, embed: Embed | None, *, timeout_s: float) -> None:
        self.embed = embed
        self._timeout_s = timeout_s

    @property
    def available(self) -> bool:
        """Whether there is an embedder at all (none: embedding-based rules cannot run)."""
        return self.embed is not None

    async def of(self, exchange: Exchange, text: str) -> np.ndarray | None:
        """The embedding of `text` for this request; None without an embedder or when it
        failed (logged: embedding-based checks then did not run)."""
        known = self.known(exchange, text)
        if known is not None or self.embed is None:
            return known
        try:
            vectors = await asyncio.wait_for(self.embed([text]), timeout=self._timeout_s)
        except Exception:
            log.warning("embedding failed; embedding-based checks skip this request", exc_info=True)
            return None
        self.note(exchange, text, vectors[0])
        return vectors[0]

    @staticmethod
    def known(exchange: Exchange, text: str) -> np.ndarray | None:
        """The request's embedding if it was already computed, and of this very text."""
        if exchange.embedded_text == text:
            return exchange.embedding
        return None

    @staticmethod
    def note(exchange: Exchange, text: str, vector: np.ndarray) -> None:
        """Keep an embedding another stage computed (the cache replica, during its lookup)."""
        if exchange.embedding is None:
            exchange.embedding, exchange.embedded_text = vector, text
