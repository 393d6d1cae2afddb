"""A profile's model allow-list, max_tokens ceiling and per-model overrides."""

from __future__ import annotations

import pytest

from gateway.policy.config import ModelRule, PolicyConfig, PolicyProfile
from gateway.policy.engine import PolicyEngine
from gateway.policy.limits import admit

PROFILE = PolicyProfile(
    models=["sim-*", "gpt-4o-mini"],
    max_tokens=1000,
    model_rules={
        "gpt-4o*": ModelRule(max_tokens=200, pii={"EMAIL": "block"}),
        "sim-big": ModelRule(max_tokens=5000),
    },
)
REJECTING = PROFILE.model_copy(update={"max_tokens_action": "reject"})


def test_a_model_outside_the_profile_is_refused_and_recorded() -> None:
    check = admit(PROFILE, "claude-opus", 10)
    assert check.refused == "model"
    (decision,) = check.decisions
    assert (decision.rule, decision.action) == ("models", "block")
    assert "claude-opus" in (decision.detail or "")


def test_a_request_under_the_ceiling_passes_unchanged() -> None:
    check = admit(PROFILE, "sim-small", 500)
    assert (check.refused, check.max_tokens, check.decisions) == (None, None, [])


def test_a_request_over_the_ceiling_is_clamped_by_default() -> None:
    check = admit(PROFILE, "sim-small", 4000)
    assert check.refused is None and check.max_tokens == 1000
    (decision,) = check.decisions
    assert (decision.rule, decision.action, decision.threshold) == ("max_tokens", "clamp", 1000)


def test_a_request_naming_no_limit_gets_the_ceiling_even_when_rejecting() -> None:
    check = admit(REJECTING, "sim-small", None)
    assert check.refused is None and check.max_tokens == 1000


def test_a_rejecting_profile_refuses_a_request_over_the_ceiling() -> None:
    check = admit(REJECTING, "sim-small", 1001)
    assert check.refused == "max_tokens" and check.ceiling == 1000
    assert check.decisions[0].action == "block"


def test_a_model_rule_lowers_the_ceiling_but_never_raises_it() -> None:
    assert admit(PROFILE, "gpt-4o-mini", 300).max_tokens == 200
    assert admit(PROFILE, "sim-big", 3000).max_tokens == 1000


def test_embeddings_have_no_token_ceiling() -> None:
    check = admit(PROFILE, "sim-small", None, generates=False)
    assert check.max_tokens is None and check.decisions == []


def test_a_dry_run_records_the_refusal_but_refuses_nothing() -> None:
    assert admit(PROFILE, "claude-opus", 10, dry_run=True).refused is None
    check = admit(REJECTING, "sim-small", 9999, dry_run=True)
    assert (check.refused, check.max_tokens) == (None, None)
    assert [d.action for d in check.decisions] == ["block"]


def test_per_model_pii_overrides_apply_only_to_their_models() -> None:
    engine = PolicyEngine(PolicyConfig(profiles={"default": PROFILE}))
    assert engine.check(["mail ana@example.org"], None, model="gpt-4o-mini").action == "block"
    assert engine.check(["mail ana@example.org"], None, model="sim-small").action == "monitor"


def test_a_profile_level_dry_run_leaves_other_profiles_enforcing() -> None:
    config = PolicyConfig(
        profiles={
            "default": PolicyProfile(pii={"EMAIL": "block"}),
            "trial": PolicyProfile(pii={"EMAIL": "block"}, dry_run=True),
        }
    )
    engine = PolicyEngine(config)
    trial = engine.check(["mail ana@example.org"], "trial")
    assert trial.action == "monitor" and [d.action for d in trial.decisions] == ["block"]
    assert engine.check(["mail ana@example.org"], None).action == "block"
    assert engine.admit("trial", "any-model", None).refused is None


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"model_rules": {"x": {"pii": {"EMAILS": "block"}}}}, "EMAILS"),
    ],
)
def test_invalid_limits_are_refused_with_the_field_named(
    bad: dict[str, object], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        PolicyProfile.model_validate(bad)
