"""The embedding-similarity jailbreak signal: how close a prompt is to a known attack.

The corpus (`jailbreak_corpus.yaml`, or `policy.jailbreak_corpus`) holds generic phrasings of
each attack family. A prompt's embedding is compared by cosine with every entry's; the nearest
entry, once the cosine passes the corpus's `floor`, becomes a `RuleMatch` whose weight rises
linearly to `max_weight` at `full`, and joins the pattern rules' noisy-OR as a
`JailbreakSignal`. The match names the entry and the cosine, so a decision explains itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.policy.data import read_yaml
from gateway.policy.jailbreak import Embedding, RuleMatch
from gateway.policy.vectors import as_rows

_CORPUS_FILE = "jailbreak_corpus.yaml"


class AttackCorpus(BaseModel):
    """A corpus file: attack phrasings by family, and the weight curve."""

    model_config = ConfigDict(extra="forbid")

    floor: float = Field(0.35, ge=0, le=1, description="cosine at which an entry starts to count")
    full: float = Field(0.4, ge=0, le=1, description="cosine at which it counts `max_weight`")
    max_weight: float = Field(0.4, gt=0, le=1, description="the signal's largest weight")
    families: dict[str, list[str]] = Field(description="family -> attack phrasings")

    @model_validator(mode="after")
    def _ordered(self) -> AttackCorpus:
        if self.full <= self.floor:
            raise ValueError("full must be above floor")
        return self

    def entries(self) -> list[CorpusEntry]:
        """Every phrasing with its id (`family.n`, n from 1), in file order."""
        return [
            CorpusEntry(f"{family}.{n}", family, text)
            for family, texts in self.families.items()
            for n, text in enumerate(texts, start=1)
        ]

    def weight(self, similarity: float) -> float:
        """The signal's weight for a nearest-entry cosine (0 below `floor`)."""
        rising = (similarity - self.floor) / (self.full - self.floor)
        return self.max_weight * min(max(rising, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class CorpusEntry:
    """One known attack phrasing."""

    id: str
    family: str
    text: str


def load_corpus(path: str | Path | None = None) -> AttackCorpus:
    """Read an attack corpus file (default: the packaged one)."""
    return AttackCorpus.model_validate(read_yaml(path, _CORPUS_FILE) or {})


@dataclass(frozen=True, slots=True)
class Nearest:
    """The corpus entry nearest to a prompt."""

    entry: CorpusEntry
    similarity: float


class SimilaritySignal:
    """A `JailbreakSignal`: nearest-neighbour cosine against the embedded attack corpus."""

    def __init__(self, corpus: AttackCorpus, vectors: np.ndarray) -> None:
        self.corpus = corpus
        self._entries = corpus.entries()
        self._vectors = np.asarray(vectors, dtype=np.float32)
        if self._vectors.shape[0] != len(self._entries):
            raise ValueError(f"{self._vectors.shape[0]} vectors for {len(self._entries)} entries")

    def nearest(self, embedding: Embedding) -> Nearest:
        """The entry nearest to the prompt (over every row of a multi-row embedding)."""
        sims = self._vectors @ as_rows(embedding).T
        row, _ = np.unravel_index(int(np.argmax(sims)), sims.shape)
        return Nearest(self._entries[int(row)], float(sims.max()))

    def __call__(self, text: str, embedding: Embedding | None) -> RuleMatch | None:
        """A match for the nearest known attack when it is close enough; None otherwise or
        when there is no embedding."""
        if embedding is None or not self._entries:
            return None
        near = self.nearest(np.asarray(embedding))
        weight = self.corpus.weight(near.similarity)
        if weight <= 0.0:
            return None
        return RuleMatch(
            id=f"similar.{near.entry.id}",
            category="similarity",
            weight=weight,
            explanation=f"close to known attack {near.entry.id} {_quote(near.entry.text)} "
            f"(cosine {near.similarity:.3f})",
        )


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
