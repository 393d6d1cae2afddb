"""The embedding stage of the input policy: topic rules and the similarity jailbreak signal,
scored on the request embedding.

It embeds nothing itself. Its phrases (topic examples, the attack corpus) are embedded once
through an injected async `embed` (`prepare`), again only for phrases a reload added; the
request embedding is passed in (`judge`). Scoring is a matrix product against ~100 vectors.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from gateway.audit.record import PolicyDecision
from gateway.policy.classifier import JailbreakClassifier
from gateway.policy.classifier import reads as classifier_reads
from gateway.policy.config import PolicyProfile
from gateway.policy.jailbreak import JailbreakScore, JailbreakScorer
from gateway.policy.similarity import AttackCorpus, SimilaritySignal
from gateway.policy.topics import TopicIndex, TopicSet
from gateway.policy.vectors import Embed, PhraseVectors, as_rows
from gateway.policy.verdict import Verdict, judge_jailbreak

UNAVAILABLE_RULE = "embedding.unavailable"


class SemanticStage:
    """Topics and known attacks, their phrase vectors, and the rules that use them."""

    def __init__(
        self,
        topics: TopicSet,
        corpus: AttackCorpus,
        scorer: JailbreakScorer,
        vectors: PhraseVectors | None = None,
        classifier: JailbreakClassifier | None = None,
    ) -> None:
        self.topics = topics
        self.classifier = classifier
        self.corpus = corpus
        self._scorer = scorer
        self._vectors = vectors if vectors is not None else PhraseVectors()
        self._topic_index: TopicIndex | None = None
        self._signal: SimilaritySignal | None = None
        self._preparing: asyncio.Future[None] | None = None

    @staticmethod
    def needs_embedding(profile: PolicyProfile) -> bool:
        """Whether any of the profile's rules is embedding-based (a topic rule that is not
        allow, or the jailbreak classifier or similarity signal where they can block).

        A signal that can only be recorded (jailbreak action `monitor`) does not get to add an
        embedding to every request (15-40 ms on a CPU, `benchmarks/cache_latency.py`); it is
        scored when the request is embedded for another rule."""
        jailbreak = profile.jailbreak
        learned = jailbreak.similarity or jailbreak.classifier
        return (learned and jailbreak.action == "block") or any(
            a != "allow" for a in profile.topics.values()
        )

    def phrases(self) -> list[str]:
        """Every phrase the engine needs embedded: topic examples, then known attacks."""
        return [*self.topics.phrases(), *(e.text for e in self.corpus.entries())]

    @property
    def prepared(self) -> bool:
        """Whether every phrase has its vector (so `judge` can run)."""
        return not self._vectors.missing(self.phrases())

    async def prepare(self, embed: Embed) -> None:
        """Embed the phrases that have no vector yet through `embed` (once; again after a
        reload that changed them). Concurrent callers share one embedding call, which goes on
        if a caller stops waiting. Raises whatever `embed` raises."""
        for _ in range(2):  # a reload during the shared call may leave new phrases
            phrases = self.phrases()
            if not self._vectors.missing(phrases):
                return
            if self._preparing is None or self._preparing.done():
                self._preparing = asyncio.ensure_future(self._vectors.ensure(phrases, embed))
            await asyncio.shield(self._preparing)

    def judge(
        self,
        verdict: Verdict,
        embedding: np.ndarray | None,
        *,
        text: str = "",
        unavailable: str | None = None,
    ) -> Verdict:
        """Stage 2: topic rules and the similarity jailbreak signal on the request embedding
        (`text` is the text it was computed from, for keywords). Without an embedding (or
        phrase vectors), the embedding-based rules do not run: when the profile has any, the
        verdict records why (`unavailable`), and a fail-closed profile is refused."""
        started = time.perf_counter()
        profile = verdict.profile
        topics, signal = self._indexes()
        if embedding is None or topics is None or signal is None:
            reason = unavailable or ("no request embedding" if embedding is None else "")
            reason = reason or "phrase vectors not prepared (no embedder)"
            if self.needs_embedding(profile):
                verdict.embedding_checks = f"not run: {reason}"
                closed = profile.embedding_unavailable == "closed"
                decision = PolicyDecision(
                    rule=UNAVAILABLE_RULE,
                    detector="embedding",
                    action="block" if closed else "not_run",
                    detail=reason,
                )
                if closed:
                    verdict.take(decision, "block")
                else:
                    verdict.decisions.append(decision)
            return verdict
        verdict.embedding_checks = "ran"
        scores = topics.score(embedding, text)
        verdict.topics = [s for s in scores if s.detected]
        for found in verdict.topics:
            action = profile.topic_action(found.topic)
            if action == "allow":
                continue
            decision = PolicyDecision(
                rule=f"topic.{found.topic}",
                detector="topic",
                action=action,
                topic=found.topic,
                score=round(found.score, 4),
                threshold=found.threshold,
                detail=found.explain(),
            )
            verdict.take(decision, action)
        if verdict.jailbreak is not None:
            self._judge_jailbreak(verdict, embedding, signal)
        verdict.latency_ms += (time.perf_counter() - started) * 1000
        return verdict

    def _judge_jailbreak(
        self, verdict: Verdict, embedding: np.ndarray, signal: SimilaritySignal
    ) -> None:
        """The classifier (when on and loaded) decides, the nearest known attack named in its
        decision; otherwise the similarity signal joins the pattern score. A prompt the
        patterns already flagged in stage 1 gets no second decision."""
        assert verdict.jailbreak is not None
        rule = verdict.profile.jailbreak
        already = any(d.detector == "jailbreak" for d in verdict.decisions)
        text = "\n".join(verdict.texts)
        if rule.classifier and self.classifier is not None and classifier_reads(text):
            patterns = verdict.jailbreak
            cut = (
                self.classifier.threshold
                if rule.classifier_threshold is None
                else (rule.classifier_threshold)
            )
            learned = max(
                (self.classifier.match(row, patterns, cut) for row in as_rows(embedding)),
                key=lambda m: m.weight,
            )
            near = signal(text, embedding) if rule.similarity else None
            matches = (learned, *patterns.matches, *([near] if near is not None else []))
            combined = JailbreakScore(learned.weight, learned.weight >= cut, cut, matches)
            verdict.jailbreak = combined
            if not already:
                judge_jailbreak(verdict, combined, threshold=cut)
            return
        if rule.similarity:
            combined = self._scorer.with_signals(
                verdict.jailbreak, text, embedding, signals=[signal]
            )
            verdict.jailbreak = combined
            if not already:
                judge_jailbreak(verdict, combined)

    def _indexes(self) -> tuple[TopicIndex | None, SimilaritySignal | None]:
        if self._topic_index is None or self._topic_index.topics is not self.topics:
            vectors = self._vectors.matrix(self.topics.phrases())
            if vectors is not None or not self.topics.topics:
                empty = np.zeros((0, 1), dtype=np.float32)
                self._topic_index = TopicIndex(self.topics, empty if vectors is None else vectors)
        if self._signal is None:
            vectors = self._vectors.matrix([e.text for e in self.corpus.entries()])
            if vectors is not None:
                self._signal = SimilaritySignal(self.corpus, vectors)
        return self._topic_index, self._signal
