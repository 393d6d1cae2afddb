"""Topic rules on the request embedding (real MiniLM), per profile, reloaded with their file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from gateway.policy.config import PolicyConfig, PolicyProfile
from gateway.policy.engine import UNAVAILABLE_RULE, PolicyEngine
from gateway.policy.topics import TopicIndex, load_topics
from gateway.policy.vectors import PhraseVectors
from tests.unit.policy.conftest import CountingEmbed

VectorOf = Callable[[str], np.ndarray]

CONFIG = PolicyConfig(
    profiles={
        "default": PolicyProfile(topics={"medical_advice": "monitor"}),
        "contractors": PolicyProfile(
            topics={"compensation": "block", "hr": "block", "medical_advice": "monitor"}
        ),
        "closed": PolicyProfile(topics={"compensation": "block"}, embedding_unavailable="closed"),
    }
)
PAY = "How much do the engineers on my team get paid per year?"


def _judged(
    engine: PolicyEngine, vector_of: VectorOf, text: str, profile: str | None
) -> tuple[str, list[str], list[str]]:
    verdict = engine.judge(engine.check([text], profile), vector_of(text), text=text)
    return verdict.action, [t.topic for t in verdict.topics], [d.rule for d in verdict.decisions]


@pytest.fixture
def engine(phrase_vectors: PhraseVectors) -> PolicyEngine:
    return PolicyEngine(CONFIG, vectors=phrase_vectors)


def test_a_pay_question_is_blocked_for_contractors_and_only_recorded_for_others(
    engine: PolicyEngine, vector_of: VectorOf
) -> None:
    assert _judged(engine, vector_of, PAY, "contractors") == (
        "block",
        ["compensation"],
        ["topic.compensation"],
    )
    assert _judged(engine, vector_of, PAY, None) == ("allow", ["compensation"], [])


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("Who on my team is on a performance improvement plan right now?", "hr"),
        ("What dose of ibuprofen is safe to take for my back pain?", "medical_advice"),
        ("Can my landlord kick me out of the flat without any notice?", "legal_advice"),
        ("Which shares should I buy with my savings this month?", "investment_advice"),
    ],
)
def test_paraphrases_not_among_the_examples_are_detected(
    engine: PolicyEngine, vector_of: VectorOf, text: str, topic: str
) -> None:
    _, topics, _ = _judged(engine, vector_of, text, None)
    assert topics[:1] == [topic]


@pytest.mark.parametrize(
    "text",
    [
        "How do I kill a Python process that hangs?",
        "Write a haiku about autumn leaves.",
        "Summarise this quarterly migration plan for the billing service.",
        "What is the capital of Australia?",
    ],
)
def test_everyday_requests_match_no_topic(
    engine: PolicyEngine, vector_of: VectorOf, text: str
) -> None:
    assert _judged(engine, vector_of, text, "contractors") == ("allow", [], [])


def test_the_decision_names_the_topic_its_score_threshold_and_nearest_example(
    engine: PolicyEngine, vector_of: VectorOf
) -> None:
    verdict = engine.check([PAY], "contractors")
    engine.judge(verdict, vector_of(PAY), text=PAY)
    (decision,) = verdict.decisions
    assert decision.topic == "compensation" and decision.detector == "topic"
    assert decision.score is not None and decision.threshold is not None
    assert decision.score >= decision.threshold == engine.topics.threshold
    assert decision.detail is not None and "nearest example" in decision.detail


def test_a_keyword_adds_the_bonus_to_the_similarity(phrase_vectors: PhraseVectors) -> None:
    topics = load_topics()
    index = TopicIndex(topics, phrase_vectors.matrix(topics.phrases()))  # type: ignore[arg-type]
    query = np.zeros(384, dtype=np.float32)  # orthogonal to everything: similarity 0
    with_word = {s.topic: s for s in index.score(query, "what is the payroll cut-off date")}
    without = {s.topic: s for s in index.score(query, "what is the cut-off date")}
    assert with_word["compensation"].keyword == "payroll"
    assert with_word["compensation"].score == pytest.approx(topics.keyword_bonus)
    assert without["compensation"].score == pytest.approx(0.0)


def test_without_an_embedding_topic_rules_are_recorded_as_not_run(
    engine: PolicyEngine,
) -> None:
    verdict = engine.judge(engine.check([PAY], "contractors"), None, unavailable="no embedder")
    assert verdict.action == "allow" and verdict.embedding_checks == "not run: no embedder"
    (decision,) = verdict.decisions
    assert (decision.rule, decision.action, decision.detail) == (
        UNAVAILABLE_RULE,
        "not_run",
        "no embedder",
    )


def test_a_fail_closed_profile_blocks_when_topic_rules_cannot_run(engine: PolicyEngine) -> None:
    verdict = engine.judge(engine.check([PAY], "closed"), None, unavailable="embedder down")
    assert verdict.action == "block" and verdict.blocking_rules == [UNAVAILABLE_RULE]


def test_a_profile_without_embedding_rules_records_nothing_without_an_embedding() -> None:
    config = PolicyConfig(
        profiles={"default": PolicyProfile(jailbreak={"similarity": False})}  # type: ignore[arg-type]
    )
    engine = PolicyEngine(config)
    verdict = engine.judge(engine.check(["hello"], None), None, unavailable="no embedder")
    assert verdict.decisions == [] and verdict.embedding_checks == "not needed"


def test_a_dry_run_profile_records_the_block_but_does_not_enforce_it(
    phrase_vectors: PhraseVectors, vector_of: VectorOf
) -> None:
    dry = PolicyProfile(topics={"compensation": "block"}, dry_run=True)
    engine = PolicyEngine(PolicyConfig(profiles={"default": dry}), vectors=phrase_vectors)
    action, _, rules = _judged(engine, vector_of, PAY, None)
    assert action == "monitor" and rules == ["topic.compensation"]


def test_a_profile_naming_an_unknown_topic_is_refused_at_start() -> None:
    config = PolicyConfig(profiles={"default": PolicyProfile(topics={"salaries": "block"})})
    with pytest.raises(ValueError, match="unknown topics"):
        PolicyEngine(config)


def _write_topics(path: Path, **topics: list[str]) -> None:
    body = {"threshold": 0.6, "topics": {n: {"examples": ex} for n, ex in topics.items()}}
    path.write_text(yaml.safe_dump(body))


def test_an_edited_topics_file_applies_to_the_next_request_and_embeds_only_new_phrases(
    tmp_path: Path, embed: CountingEmbed, vector_of: VectorOf
) -> None:
    path = tmp_path / "topics.yaml"
    _write_topics(path, travel=["Book me a flight to Lisbon."])
    profile = PolicyProfile(topics={"*": "block"}, jailbreak={"similarity": False})  # type: ignore[arg-type]
    engine = PolicyEngine(PolicyConfig(topics_file=str(path), profiles={"default": profile}))
    asyncio.run(engine.prepare(embed))
    text = "Which supermarket sells the cheapest oat milk?"
    assert _judged(engine, vector_of, text, None)[0] == "allow"

    _write_topics(
        path,
        travel=["Book me a flight to Lisbon."],
        groceries=["Where can I buy cheap milk?", "Which shop has the best prices on food?"],
    )
    assert not engine.prepared  # the new examples have no vectors yet
    asked = len(embed.asked)
    asyncio.run(engine.prepare(embed))
    assert embed.asked[asked:] == [
        "Where can I buy cheap milk?",
        "Which shop has the best prices on food?",
    ]
    assert _judged(engine, vector_of, text, None)[:2] == ("block", ["groceries"])
    assert engine.reloads == 1


def test_a_topics_edit_that_drops_a_topic_a_profile_names_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    _write_topics(path, travel=["Book me a flight."], food=["Where can I eat?"])
    profile = PolicyProfile(topics={"travel": "block"})
    engine = PolicyEngine(PolicyConfig(topics_file=str(path), profiles={"default": profile}))
    _write_topics(path, food=["Where can I eat?"])
    engine.profile(None)  # a request: the file is looked at
    assert set(engine.topics.topics) == {"travel", "food"} and engine.reloads == 0


def test_a_policy_edit_naming_an_unknown_topic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("policy:\n  profiles:\n    default:\n      topics: {hr: block}\n")
    engine = PolicyEngine(PolicyConfig(file=str(path)))
    path.write_text("policy:\n  profiles:\n    default:\n      topics: {h_r: block}\n")
    assert engine.profile(None).topics == {"hr": "block"}
