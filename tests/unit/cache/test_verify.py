"""Phase 4: fact checks between a query and a semantic candidate."""

from __future__ import annotations

import pytest

from gateway.cache.verify import verify_candidate


@pytest.mark.parametrize(
    ("query", "candidate", "reason"),
    [
        ("What is 15% of 200?", "What is 20% of 200?", "numbers differ"),
        ("How do I cook rice for three people?", "How do I cook rice for 4 people?", "numbers"),
        ("Is a $50 gift too cheap?", "Is a $500 gift too cheap?", "numbers differ"),
        ("What happened in 2008?", "What happened in 2009?", "numbers differ"),
        ("Is it safe to fly on Monday?", "Is it safe to fly on Tuesday?", "dates differ"),
        ("Best beaches to visit in July?", "Best beaches to visit in August?", "dates differ"),
        ("How do I get a visa for Canada?", "How do I get a visa for Mexico?", "entities"),
        ("How do I get a visa?", "How do I get a visa for Canada?", "entities"),
        ("Why is Python slow?", "Why is Java slow?", "named entities differ"),
        ("Why can't I sleep at night?", "Why can I sleep at night?", "negation differs"),
        ("Can I travel without a passport?", "Can I travel with a passport?", "negation"),
        ("How do I increase my heart rate?", "How do I decrease my heart rate?", "comparison"),
        ("What should I do before an interview?", "What should I do after an interview?", "comp"),
    ],
)
def test_semantic_hit_refused_when_a_fact_differs(query: str, candidate: str, reason: str) -> None:
    verdict = verify_candidate(query, candidate)
    assert not verdict.accepted
    assert reason in verdict.reason


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("How can I learn Python quickly?", "What is the fastest way to learn python?"),
        ("What is fifteen percent of 200?", "What's 15% of 200?"),
        ("How much is $50 in euros?", "How many euros is 50 dollars?"),
        ("Why is Donald Trump popular?", "Why do people like trump?"),
        ("What is the best way to lose weight?", "How can I lose weight?"),
        ("How do I not get distracted?", "How can I avoid being distracted? I never focus."),
    ],
)
def test_true_paraphrases_are_accepted(query: str, candidate: str) -> None:
    assert verify_candidate(query, candidate).accepted


def test_a_possessive_names_the_same_entity() -> None:
    same = verify_candidate("What's Australia's capital?", "What is the capital of Australia?")
    other = verify_candidate("What's Austria's capital?", "What is the capital of Australia?")
    assert same.accepted
    assert (other.accepted, other.reason) == (False, "named entities differ")
