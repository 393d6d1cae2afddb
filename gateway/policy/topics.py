"""Topic rules: topics defined by example phrases and keywords, scored on the request embedding.

A topic's score is the request embedding's cosine with the nearest of its example phrases,
plus `keyword_bonus` when one of its keywords is in the text (whole words, any case). A topic
is detected at or over its threshold; what that does is the profile's `topics` rule. The
topics are data: the packaged `topics.yaml`, or the file `policy.topics_file` names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gateway.policy.data import read_yaml
from gateway.policy.vectors import as_rows

_TOPICS_FILE = "topics.yaml"


class TopicDefinition(BaseModel):
    """One topic: what it covers, example phrases, keywords."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    examples: list[str] = Field(min_length=1, description="questions that are on the topic")
    keywords: list[str] = Field(default_factory=list, description="whole words, any case")
    threshold: float | None = Field(None, ge=0, le=1, description="unset: the file's")


class TopicSet(BaseModel):
    """A topics file."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.4, ge=0, le=1, description="score at which a topic is detected")
    keyword_bonus: float = Field(0.1, ge=0, le=1, description="added when a keyword is present")
    topics: dict[str, TopicDefinition] = Field(default_factory=dict)

    def phrases(self) -> list[str]:
        """Every example phrase, topic by topic, in file order."""
        return [p for t in self.topics.values() for p in t.examples]


def load_topics(path: str | Path | None = None) -> TopicSet:
    """Read a topics file (default: the packaged examples)."""
    return TopicSet.model_validate(read_yaml(path, _TOPICS_FILE) or {})


@dataclass(frozen=True, slots=True)
class TopicScore:
    """How close a request came to one topic, and why."""

    topic: str
    score: float  # similarity + the keyword bonus, capped at 1
    similarity: float
    threshold: float
    nearest: str  # the example phrase nearest to the request
    keyword: str | None  # the keyword found, if any

    @property
    def detected(self) -> bool:
        return self.score >= self.threshold

    def explain(self) -> str:
        """One line for the decision record."""
        found = f", keyword {self.keyword!r}" if self.keyword else ""
        return f"nearest example {self.nearest!r} (cosine {self.similarity:.3f}){found}"


class TopicIndex:
    """The example phrases of a `TopicSet` as one matrix, scored against request embeddings."""

    def __init__(self, topics: TopicSet, vectors: np.ndarray) -> None:
        self.topics = topics
        self._vectors = np.asarray(vectors, dtype=np.float32)
        self._names = list(topics.topics)
        sizes = [len(t.examples) for t in topics.topics.values()]
        self._starts = np.cumsum([0, *sizes])[:-1]
        self._phrases = topics.phrases()
        if self._vectors.shape[0] != len(self._phrases):
            raise ValueError(f"{self._vectors.shape[0]} vectors for {len(self._phrases)} phrases")
        self._keywords = [_keyword_pattern(t.keywords) for t in topics.topics.values()]

    def score(self, embedding: np.ndarray, text: str) -> list[TopicScore]:
        """Every topic's score for a request (its embedding: one row, or one per text),
        highest first."""
        if not self._names:
            return []
        sims = (self._vectors @ as_rows(embedding).T).max(axis=1)  # per example phrase
        best = np.maximum.reduceat(sims, self._starts)  # per topic
        lowered = text.lower()
        scores = []
        for i, name in enumerate(self._names):
            definition = self.topics.topics[name]
            start = int(self._starts[i])
            nearest = self._phrases[
                start + int(np.argmax(sims[start : start + len(definition.examples)]))
            ]
            pattern = self._keywords[i]
            found = pattern.search(lowered) if pattern is not None else None
            similarity = float(best[i])
            bonus = self.topics.keyword_bonus if found else 0.0
            threshold = definition.threshold
            scores.append(
                TopicScore(
                    topic=name,
                    score=min(1.0, similarity + bonus),
                    similarity=similarity,
                    threshold=self.topics.threshold if threshold is None else threshold,
                    nearest=nearest,
                    keyword=found.group(0) if found else None,
                )
            )
        scores.sort(key=lambda s: -s.score)
        return scores


def _keyword_pattern(keywords: list[str]) -> re.Pattern[str] | None:
    if not keywords:
        return None
    words = sorted({k.lower().strip() for k in keywords if k.strip()}, key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
    return re.compile(rf"\b(?:{alternatives})\b")
