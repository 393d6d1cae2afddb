"""The argument-order veto: who did what to whom, and the other vetoes it joins."""

from __future__ import annotations

import pytest

from gateway.cache.roles import arguments_swapped
from gateway.cache.verify import verify_candidate


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("Does the man bite the dog?", "Does the dog bite the man?"),
        ("Why do dogs chase cats?", "Why do cats chase dogs?"),
        ("Is Python faster than Java?", "Is Java faster than Python?"),
        ("How do I convert PDF to Word?", "How do I convert Word to PDF?"),
        (
            "Transfer 100 dollars from savings to checking",
            "Transfer 100 dollars from checking to savings",
        ),
        (
            "How do I transfer money from account A to account B?",
            "How do I transfer money from account B to account A?",
        ),
        (
            "How safe is it to drive from Texas to California?",
            "Is it safe to drive from California to Texas?",
        ),
        ("Did the man bite the dog?", "Was the man bitten by the dog?"),
    ],
)
def test_semantic_hit_refused_when_arguments_swap_roles(query: str, candidate: str) -> None:
    assert arguments_swapped(query, candidate)
    verdict = verify_candidate(query, candidate)
    assert (verdict.accepted, verdict.reason) == (False, "argument order differs")


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        # A passive says the same with the arguments the other way round.
        ("Did the man bite the dog?", "Was the dog bitten by the man?"),
        ("How does the government tax income?", "How is income taxed by the government?"),
        # Symmetric connectives: either side first is the same question.
        (
            "What is the difference between Python and Java?",
            "What is the difference between Java and Python?",
        ),
        ("Python vs Java: which is better?", "Java vs Python: which is better?"),
        # The same roles, reordered.
        ("How can I get from Paris to London?", "What is the way to London from Paris?"),
        (
            "What is the best way to learn guitar at home?",
            "At home, what is the best way to learn guitar?",
        ),
        ("How can I learn Python quickly?", "What is the fastest way to learn python?"),
    ],
)
def test_same_roles_in_other_words_pass(query: str, candidate: str) -> None:
    assert not arguments_swapped(query, candidate)


def test_the_man_bites_dog_example_is_refused_whole() -> None:
    """The issue's example: served at cosine 0.98 before this veto."""
    verdict = verify_candidate("Does the man bite the dog?", "Does the dog bite the man?")
    assert not verdict.accepted


@pytest.mark.parametrize(
    ("query", "candidate", "reason"),
    [
        ("What is 15% of 200?", "What is 20% of 200?", "numbers differ"),
        ("Is it safe to fly on Monday?", "Is it safe to fly on Tuesday?", "dates differ"),
        ("Why is Python slow?", "Why is Java slow?", "named entities differ"),
        ("Why can't I sleep at night?", "Why can I sleep at night?", "negation differs"),
        ("Does the man bite the dog?", "Does the dog bite the man?", "argument order differs"),
    ],
)
def test_each_veto_names_its_reason(query: str, candidate: str, reason: str) -> None:
    verdict = verify_candidate(query, candidate)
    assert (verdict.accepted, verdict.reason) == (False, reason)
