"""The policy engine's input side: detectors run over a request's text, a profile decides.

Two stages, because the request embedding is computed from the *redacted* text:

1. `PolicyEngine.check(texts, profile, model=...)`: PII and secret detectors, the pattern
   jailbreak score. CPU-bound (regex): call it off the event loop, unless `is_light` says it
   takes less than a thread hand-off is worth (short texts, no NER model run).
2. `PolicyEngine.judge(verdict, embedding, text=...)`: topic rules and the embedding-similarity
   jailbreak signal on the request embedding (a matrix product; microseconds). The engine
   embeds nothing itself: the request embedding comes from the caller, and the engine's own
   phrases (topic examples, known attacks) are embedded once through `prepare(embed)`.

Both return or extend a `Verdict`: the strongest action taken (block > redact > monitor >
allow), the decision records for the audit trail, the detected topics, and, for `redact`, the
texts with typed placeholders (one mapping across all of a request's texts, so the same value
is the same placeholder everywhere). `admit` applies a profile's model and max_tokens rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from gateway.audit.record import PolicyDecision
from gateway.errors import InvalidRequest
from gateway.policy.classifier import JailbreakClassifier
from gateway.policy.config import Action, NerConfig, PolicyConfig, PolicyProfile
from gateway.policy.data import read_yaml
from gateway.policy.detection import ALL_TYPES, detect
from gateway.policy.entities import EntityRecognizer, NerUnavailable
from gateway.policy.injection import InjectionVerdict, check_injection
from gateway.policy.jailbreak import JailbreakScorer
from gateway.policy.limits import LimitCheck, admit
from gateway.policy.normalize import normalize
from gateway.policy.output import OutputFilter
from gateway.policy.redaction import redact
from gateway.policy.rules import action_for, rule_for
from gateway.policy.semantic import UNAVAILABLE_RULE, SemanticStage
from gateway.policy.similarity import AttackCorpus, load_corpus
from gateway.policy.spans import Span
from gateway.policy.topics import TopicSet, load_topics
from gateway.policy.vectors import Embed, PhraseVectors
from gateway.policy.verdict import Verdict, judge_jailbreak
from gateway.policy.watch import WatchedFile

__all__ = ["UNAVAILABLE_RULE", "InjectionVerdict", "NerUnavailable", "PolicyEngine", "Verdict"]

log = logging.getLogger(__name__)

# A check of this many characters (all texts) takes ~0.6 ms of regex on one core, under the
# interpreter's 5 ms switch interval: handing it to a thread (~0.1 ms) would not let the event
# loop run meanwhile anyway (`re` holds the GIL). Longer texts still go to a thread.
LIGHT_CHARS = 1000


@dataclass(frozen=True)
class _Plan:
    """What a profile checks for under one model, worked out once: the span types acted
    on, the confidence each needs, whether the NER model runs."""

    profile: PolicyProfile  # the object planned for (an id is reused once its object goes)
    pii: dict[str, Action]
    acted_on: frozenset[str]
    floors: dict[str, float]
    entities: bool


class PolicyEngine:
    """Applies the configured profiles; with `policy.file`, the file's current ones."""

    def __init__(
        self,
        config: PolicyConfig,
        scorer: JailbreakScorer | None = None,
        *,
        vectors: PhraseVectors | None = None,
        entities: EntityRecognizer | None = None,
        classifier: JailbreakClassifier | None = None,
    ) -> None:
        """`vectors` may be shared between engines (phrases are embedded once for all);
        `entities` (the NER model) and `classifier` default to the configured ones. A
        profile that uses NER makes the model load here, so a missing model is an error at
        start (`NerUnavailable`), not at the first request."""
        self.config = config
        self._scorer = scorer or JailbreakScorer()
        self.entities = entities or _recognizer(config.ner)
        self.classifier = classifier or JailbreakClassifier.load(config.jailbreak_classifier)
        self._operating_points: dict[str, float] = read_yaml(None, "operating_points.yaml")
        _load_ner_if_used(config, self.entities)
        self._policy_file = (
            WatchedFile(config.file, _parse_policy, "policy file") if config.file else None
        )
        topics = load_topics(config.topics_file)
        self._topics_file = _topics_watch(config.topics_file)
        if self._topics_file is not None:
            self._topics_file.changed()  # seen now: the next change is a reload
        corpus = load_corpus(config.jailbreak_corpus)
        self.semantic = SemanticStage(topics, corpus, self._scorer, vectors, self.classifier)
        self.reloads = 0
        self._plans: dict[tuple[int, str | None], _Plan] = {}
        _check_topic_names(self.config, self.topics)
        self._refresh()

    def _refresh(self) -> None:
        """Re-read `policy.file` and the topics file if they changed (a stat per call)."""
        if self._policy_file is not None:
            loaded = self._policy_file.changed()
            if loaded is not None:
                self._adopt_policy(loaded)
        if self._topics_file is not None:
            topics = self._topics_file.changed()
            if topics is not None:
                self._adopt_topics(topics)

    def _adopt_policy(self, loaded: PolicyConfig) -> None:
        assert self._policy_file is not None
        if loaded.topics_file != self.config.topics_file:
            try:
                topics = load_topics(loaded.topics_file)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                log.error("policy file refused: its topics file does not load: %s", exc)
                return
            watch = _topics_watch(loaded.topics_file)
            if watch is not None:
                watch.changed()
        else:
            topics, watch = self.topics, self._topics_file
        try:
            _check_topic_names(loaded, topics)
            entities = self.entities
            if loaded.ner != self.config.ner:
                entities = _recognizer(loaded.ner)
            _load_ner_if_used(loaded, entities)
        except (ValueError, NerUnavailable) as exc:
            log.error("policy file %s refused, keeping the last policy: %s", loaded.file, exc)
            return
        self.entities = entities
        # The file may not point at itself again; the live file stays the one watched.
        self.config = loaded.model_copy(update={"file": str(self._policy_file.path)})
        self._topics_file = watch
        self._set_topics(topics)
        self.reloads += 1
        log.info("policy reloaded (%d profiles)", len(loaded.profiles))

    def _adopt_topics(self, topics: TopicSet) -> None:
        try:
            _check_topic_names(self.config, topics)
        except ValueError as exc:
            log.error("topics file refused, keeping the last topics: %s", exc)
            return
        self._set_topics(topics)
        self.reloads += 1
        log.info("topics reloaded (%d topics)", len(topics.topics))

    def _set_topics(self, topics: TopicSet) -> None:
        self.semantic.topics = topics  # the index is rebuilt from the phrase vectors

    def profile(self, name: str | None) -> PolicyProfile:
        """The named profile, else the default one (`policy.file` re-read if it changed)."""
        self._refresh()
        return self._profile(name)

    def _profile(self, name: str | None) -> PolicyProfile:
        profiles = self.config.profiles
        return profiles.get(name or "", profiles[self.config.default_profile])

    def output_filter(
        self, profile_name: str | None, redacted: Mapping[str, str] | None = None
    ) -> OutputFilter | None:
        """A filter for one answer, or None when there is nothing to do: no output rules and
        nothing to restore (and always in a dry run, where answers are never changed).
        `redacted` is the request's placeholder mapping, restored when the profile says so."""
        profile = self.profile(profile_name)
        restore = redacted if profile.restore_redacted else None
        filtering = any(a != "allow" for a in profile.output.values())
        if self.config.dry_run_for(profile) or not (filtering or restore):
            return None
        acted_on = {t for t in ALL_TYPES if action_for(profile.output, t) != "allow"}
        floors = self.confidence_floors(profile, acted_on)
        return OutputFilter(profile, restore, entities=self.entities, floors=floors)

    def admit(
        self,
        profile_name: str | None,
        model: str,
        max_tokens: int | None,
        *,
        generates: bool = True,
    ) -> LimitCheck:
        """The profile's model allow-list and (for a request that `generates` tokens) its
        max_tokens ceiling, for one request."""
        profile = self.profile(profile_name)
        dry_run = self.config.dry_run_for(profile)
        return admit(profile, model, max_tokens, generates=generates, dry_run=dry_run)

    def check(
        self, texts: Sequence[str], profile_name: str | None, *, model: str | None = None
    ) -> Verdict:
        """Stage 1 on `texts` (a request's messages) under the profile: detectors and the
        pattern jailbreak score. `model` selects the profile's per-model overrides."""
        started = time.perf_counter()
        profile = self.profile(profile_name)
        verdict = Verdict(
            action="allow",
            profile=profile,
            texts=list(texts),
            dry_run=self.config.dry_run_for(profile),
        )
        plan = self._plan(profile, model)
        pii, acted_on, floors = plan.pii, plan.acted_on, plan.floors
        entities = self.entities if plan.entities else None
        redactions: list[list[Span]] = []
        views = [normalize(text) for text in texts]
        for text, view in zip(texts, views, strict=True):
            spans = detect(
                text, types=acted_on, min_confidence=floors, entities=entities, normalized=view
            )
            verdict.spans.append(spans)
            to_redact = []
            for span_type, found in _by_type(spans).items():
                action = action_for(pii, span_type)
                decision = PolicyDecision(
                    rule=f"pii.{span_type}",
                    detector=found[0].detector,
                    action=action,
                    span_types=[span_type],
                    score=round(max(s.confidence for s in found), 4),
                    threshold=floors.get(span_type),
                )
                verdict.take(decision, action)
                if action == "redact":
                    to_redact += found
            redactions.append(to_redact)
        verdict.jailbreak = self._scorer.score("\n".join(v.text for v in views))
        judge_jailbreak(verdict, verdict.jailbreak)
        if any(redactions) and not verdict.dry_run:
            verdict.texts, verdict.mapping = _redact_all(texts, redactions)
        verdict.latency_ms = (time.perf_counter() - started) * 1000
        return verdict

    def is_light(self, texts: Sequence[str], profile_name: str | None, model: str | None) -> bool:
        """Whether `check` on `texts` is cheap enough to run on the event loop: no NER model
        run and at most `LIGHT_CHARS` characters. The policy file is not re-read here: `check`
        does that, once per request."""
        if sum(map(len, texts)) > LIGHT_CHARS:
            return False
        return not self._plan(self._profile(profile_name), model).entities

    def _plan(self, profile: PolicyProfile, model: str | None) -> _Plan:
        plan = self._plans.get((id(profile), model))
        if plan is None or plan.profile is not profile:
            pii = profile.pii_rules(model)
            acted_on = frozenset(t for t in ALL_TYPES if action_for(pii, t) != "allow")
            plan = _Plan(
                profile,
                pii,
                acted_on,
                self.confidence_floors(profile, acted_on),
                bool(acted_on & profile.entity_types(model)),
            )
            if len(self._plans) >= 1024:  # profiles x aliases; reloads leave stale ones
                self._plans.clear()
            self._plans[(id(profile), model)] = plan
        return plan

    def confidence_floors(self, profile: PolicyProfile, types: Collection[str]) -> dict[str, float]:
        """Per span type, the confidence a span needs: the profile's `min_confidence`,
        else the packaged operating point (most specific key first)."""
        floors = {}
        for span_type in types:
            own = rule_for(profile.min_confidence, span_type)
            packaged = rule_for(self._operating_points, span_type)
            floors[span_type] = float(own if own is not None else packaged or 0.0)
        return floors

    def injection_needs_embeddings(self, profile_name: str | None) -> bool:
        """Whether `check_injection` under the profile should get the texts' embeddings: only
        where the classifier is on and a flagged text is blocked (a recorded-only signal does
        not get to add an embedding call to every request with tool results)."""
        rule = self.profile(profile_name).injection
        return rule.classifier and rule.action == "block"

    def check_injection(
        self,
        texts: Sequence[str],
        profile_name: str | None,
        *,
        embeddings: np.ndarray | None = None,
    ) -> InjectionVerdict:
        """Indirect prompt injection in content that enters the conversation from outside
        the caller: tool results (role=tool messages, tool_result blocks) and retrieved
        documents. Each text is scored on its own (patterns on the normalised text; the
        classifier on its row of `embeddings`, one row per text, when given). CPU-light;
        see `gateway.policy.injection`."""
        profile = self.profile(profile_name)
        return check_injection(
            texts,
            profile,
            self._scorer,
            self.classifier,
            embeddings=embeddings,
            dry_run=self.config.dry_run_for(profile),
        )

    @property
    def topics(self) -> TopicSet:
        """The topics in force (the topics file's, as last read)."""
        return self.semantic.topics

    @property
    def corpus(self) -> AttackCorpus:
        """The known-attack corpus of the similarity signal."""
        return self.semantic.corpus

    def needs_embedding(self, profile: PolicyProfile) -> bool:
        """Whether any of the profile's rules is embedding-based (see `SemanticStage`)."""
        return self.semantic.needs_embedding(profile)

    @property
    def prepared(self) -> bool:
        """Whether every phrase has its vector (so `judge` can run)."""
        self._refresh()
        return self.semantic.prepared

    async def prepare(self, embed: Embed) -> None:
        """Embed the engine's phrases that have no vector yet through `embed` (once; again
        after a reload that changed them). Raises whatever `embed` raises."""
        self._refresh()
        await self.semantic.prepare(embed)

    def judge(
        self,
        verdict: Verdict,
        embedding: np.ndarray | None,
        *,
        text: str = "",
        unavailable: str | None = None,
    ) -> Verdict:
        """Stage 2 on the request embedding (see `SemanticStage.judge`)."""
        return self.semantic.judge(verdict, embedding, text=text, unavailable=unavailable)


def _recognizer(config: NerConfig) -> EntityRecognizer:
    return EntityRecognizer(
        config.model,
        gate=config.gate == "capitalized",
        whole_below_words=config.whole_below_words,
        labels=config.labels,
    )


def _load_ner_if_used(config: PolicyConfig, entities: EntityRecognizer) -> None:
    if any(p.uses_ner() for p in config.profiles.values()):
        entities.load()


def _parse_policy(path: Path) -> PolicyConfig:
    data = yaml.safe_load(path.read_text()) or {}
    return PolicyConfig.model_validate(data.get("policy", data))


def _topics_watch(path: str | None) -> WatchedFile[TopicSet] | None:
    return WatchedFile(path, load_topics, "topics file") if path else None


def _check_topic_names(config: PolicyConfig, topics: TopicSet) -> None:
    for name, profile in config.profiles.items():
        unknown = set(profile.topics) - set(topics.topics) - {"*"}
        if unknown:
            raise ValueError(
                f"profile {name!r} names unknown topics {sorted(unknown)}; "
                f"known: {sorted(topics.topics)}"
            )


def _by_type(spans: list[Span]) -> dict[str, list[Span]]:
    grouped: dict[str, list[Span]] = {}
    for span in spans:
        grouped.setdefault(span.type, []).append(span)
    return grouped


# NUL, then Unicode's noncharacters (reserved for internal use, never meaningful in text).
_SEPARATORS = (
    0,
    *range(0xFDD0, 0xFDF0),
    *(plane * 0x10000 + low for plane in range(17) for low in (0xFFFE, 0xFFFF)),
)


def _separator(texts: Sequence[str]) -> str:
    for code in _SEPARATORS:
        if not any(chr(code) in text for text in texts):
            return chr(code)
    raise InvalidRequest("The request's text holds every Unicode noncharacter; send text.")


def _redact_all(texts: Sequence[str], spans: list[list[Span]]) -> tuple[list[str], dict[str, str]]:
    # One mapping across the request: the same value keeps one placeholder in every message.
    # Texts are joined with a separator none of them contains, redacted once, and split back.
    separator = _separator(texts)
    offsets, position = [], 0
    for text in texts:
        offsets.append(position)
        position += len(text) + 1
    shifted = [
        Span(s.start + offsets[i], s.end + offsets[i], s.type, s.text, s.confidence, s.detector)
        for i, group in enumerate(spans)
        for s in group
    ]
    redacted = redact(separator.join(texts), shifted)
    return redacted.text.split(separator), redacted.mapping
