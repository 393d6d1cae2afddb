"""Policy fixtures: the real MiniLM embedder, loaded once per session, as the engine's
injected `embed` callable (the production shape: async, texts -> normalised rows)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from gateway.cache.embedder import Embedder
from gateway.policy.config import PolicyConfig
from gateway.policy.engine import PolicyEngine
from gateway.policy.vectors import PhraseVectors


class CountingEmbed:
    """An `Embed` over the real embedder that remembers every text it was asked for."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self.asked: list[str] = []

    async def __call__(self, texts: list[str]) -> np.ndarray:
        self.asked += texts
        return await asyncio.to_thread(self._embedder.embed, texts)


@pytest.fixture
def embed(embedder: Embedder) -> CountingEmbed:
    return CountingEmbed(embedder)


@pytest.fixture(scope="session")
def vector_of(embedder: Embedder) -> Callable[[str], np.ndarray]:
    """One text's embedding, as the request path gets it."""
    return lambda text: embedder.embed([text])[0]


@pytest.fixture(scope="session")
def phrase_vectors(embedder: Embedder) -> PhraseVectors:
    """The packaged topics' and attack corpus's phrases, embedded once for every test."""
    vectors = PhraseVectors()
    engine = PolicyEngine(PolicyConfig(), vectors=vectors)
    asyncio.run(engine.prepare(CountingEmbed(embedder)))
    return vectors
