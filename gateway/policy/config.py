"""The `policy` config section: profiles of detector actions, chosen per group.

    policy:
      default_profile: default
      dry_run: false            # decide and record, but never block or change a request
      topics_file: null         # null: the packaged example topics (gateway/policy/topics.yaml)
      profiles:
        default:
          pii: {"*": monitor, credentials: redact}
          jailbreak: {action: monitor}
          topics: {medical_advice: monitor}
        strict:                  # e.g. `access.groups.contractors.policy: strict`
          pii: {"*": redact, CREDIT_CARD: block, US_SSN: block, credentials: block}
          jailbreak: {action: block, threshold: 0.45}
          topics: {compensation: block, hr: block, "*": monitor}
          models: [sim-small, "gpt-4o*"]
          max_tokens: 1024
          max_tokens_action: reject
          model_rules:
            "gpt-4o*": {pii: {EMAIL: block}, max_tokens: 256}

Keys of `pii` are span types (EMAIL, CREDIT_CARD, PERSON, NPI, ...), a group (`credentials`,
`phi`, `entities`) or `*` (every other pattern type: the NER types, PERSON, ORGANIZATION,
LOCATION, NRP and DATE_TIME, are named or grouped as `entities`, since each costs a model run);
the most specific key wins. `min_confidence` takes the same keys. Keys of `topics` are topic
names from the topics file or `*`. The format in full: docs/policy.md.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.policy.detection import ALL_TYPES, GROUPS
from gateway.policy.entities import DEFAULT_LABELS, DEFAULT_MODEL, ENTITY_TYPES
from gateway.section import ConfigSection

Action = Literal["allow", "monitor", "redact", "block"]
TopicAction = Literal["allow", "monitor", "block"]


class JailbreakPolicy(ConfigSection):
    """What a jailbreak / prompt-injection score at or over `threshold` does."""

    action: Action = Field("monitor", description="what a flagged prompt gets")
    threshold: float | None = Field(
        None, ge=0, le=1, description="unset: the packaged rules' threshold"
    )
    similarity: bool = Field(
        True,
        description="add the embedding-similarity signal (nearest known attack) to the "
        "pattern score; needs the request embedding. With `classifier` on, it only names the "
        "nearest known attack in the decision",
    )
    classifier: bool = Field(
        True,
        description="decide with the learned classifier on the request embedding and the "
        "pattern scores (a pattern score at `threshold` still flags on its own)",
    )
    classifier_threshold: float | None = Field(
        None, ge=0, le=1, description="unset: the weights file's calibrated operating point"
    )


class InjectionPolicy(ConfigSection):
    """What indirect prompt injection in tool results and retrieved documents gets."""

    action: TopicAction = Field(
        "monitor", description="what a flagged tool result or document gets (no redact)"
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="pattern score that flags; unset: the patterns file's"
    )
    classifier: bool = Field(
        True, description="also score each text's embedding with the learned classifier"
    )
    classifier_threshold: float | None = Field(
        None, ge=0, le=1, description="unset: the weights file's calibrated operating point"
    )


class ModelRule(ConfigSection):
    """Overrides of a profile for the models whose alias matches the rule's pattern."""

    pii: dict[str, Action] = Field(
        default_factory=dict, description="merged over the profile's `pii` for these models"
    )
    max_tokens: int | None = Field(None, ge=1, description="a lower ceiling for these models")

    @field_validator("pii")
    @classmethod
    def _known_types(cls, rules: dict[str, Action]) -> dict[str, Action]:
        return _check_span_keys(rules)


class PolicyProfile(ConfigSection):
    """Detector actions applied to a request's input."""

    pii: dict[str, Action] = Field(
        default_factory=lambda: _default_pii(),
        description="span type, 'credentials' or '*' -> action",
    )
    min_confidence: dict[str, float] = Field(
        default_factory=dict,
        description="span type, group or '*' -> the confidence a span needs to count; "
        "merged over the packaged operating points (gateway/policy/operating_points.yaml)",
    )
    jailbreak: JailbreakPolicy = Field(default_factory=JailbreakPolicy)
    injection: InjectionPolicy = Field(default_factory=InjectionPolicy)
    topics: dict[str, TopicAction] = Field(
        default_factory=dict, description="topic name or '*' -> allow, monitor or block"
    )
    output: dict[str, Action] = Field(
        default_factory=lambda: _default_output(),
        description="the same keys, applied to answers (streamed ones too)",
    )
    restore_redacted: bool = Field(
        False, description="put values redacted from the request back into its answer"
    )
    hold_back_chars: int = Field(
        96,
        ge=16,
        le=4096,
        description="stream text held back so a value split across chunks is still caught",
    )
    models: list[str] | None = Field(
        None,
        description="model aliases (shell patterns) members may use, on top of their access "
        "grant; unset: whatever the grant allows",
    )
    max_tokens: int | None = Field(None, ge=1, description="ceiling on a request's max_tokens")
    max_tokens_action: Literal["clamp", "reject"] = Field(
        "clamp", description="clamp: lower the request's max_tokens; reject: answer 400"
    )
    model_rules: dict[str, ModelRule] = Field(
        default_factory=dict,
        description="model alias pattern -> overrides; the first matching pattern applies",
    )
    dry_run: bool = Field(False, description="record this profile's decisions; enforce none")
    embedding_unavailable: Literal["open", "closed"] = Field(
        "open",
        description="when the request embedding cannot be had, embedding-based rules do not "
        "run: open lets the request on (recorded as not run), closed refuses it (503)",
    )

    @field_validator("pii", "output", "min_confidence")
    @classmethod
    def _known_types(cls, rules: dict[str, Any]) -> dict[str, Any]:
        return _check_span_keys(rules)

    @field_validator("min_confidence")
    @classmethod
    def _in_unit_range(cls, floors: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in floors.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"confidence floors must be in [0, 1]: {bad}")
        return floors

    def entity_types(self, model: str | None = None) -> frozenset[str]:
        """The NER span types any input or output rule acts on (empty: NER never runs)."""
        from gateway.policy.rules import action_for

        rules = [self.pii_rules(model), self.output]
        return frozenset(t for t in ENTITY_TYPES for r in rules if action_for(r, t) != "allow")

    def uses_ner(self) -> bool:
        """Whether any rule of the profile, for any model, acts on a NER type."""
        from gateway.policy.rules import action_for

        rules = [self.pii, self.output, *({**self.pii, **r.pii} for r in self.model_rules.values())]
        return any(action_for(r, t) != "allow" for r in rules for t in ENTITY_TYPES)

    def model_rule(self, model: str | None) -> ModelRule | None:
        """The first of `model_rules` whose pattern matches `model`, if any."""
        if model is None:
            return None
        return next((r for p, r in self.model_rules.items() if fnmatchcase(model, p)), None)

    def pii_rules(self, model: str | None) -> dict[str, Action]:
        """`pii`, with the overrides of `model`'s rule merged over it."""
        rule = self.model_rule(model)
        return {**self.pii, **rule.pii} if rule is not None and rule.pii else self.pii

    def token_ceiling(self, model: str | None) -> int | None:
        """The lowest of the profile's and `model`'s max_tokens ceilings, if any."""
        rule = self.model_rule(model)
        own = rule.max_tokens if rule is not None else None
        ceilings = [c for c in (self.max_tokens, own) if c is not None]
        return min(ceilings) if ceilings else None

    def allows_model(self, model: str) -> bool:
        """Whether `models` (when set) lets members use `model`."""
        return self.models is None or any(fnmatchcase(model, p) for p in self.models)

    def topic_action(self, topic: str) -> TopicAction:
        """What a detected `topic` gets: its own rule, else `*`, else allow."""
        return self.topics.get(topic, self.topics.get("*", "allow"))


def _check_span_keys(rules: dict[str, Any]) -> dict[str, Any]:
    unknown = set(rules) - ALL_TYPES - set(GROUPS) - {"*"}
    if unknown:
        raise ValueError(f"unknown span types {sorted(unknown)}; known: {sorted(ALL_TYPES)}")
    return rules


def _default_pii() -> dict[str, Action]:
    # Out of the box: secrets never leave the building; personal data is recorded, not changed.
    return {"*": "monitor", "credentials": "redact"}


def _default_output() -> dict[str, Action]:
    # Off unless configured: output rules hold streamed text back (`hold_back_chars`), which
    # delays every stream's first token; a profile turns them on where that is worth it.
    return {}


class NerConfig(ConfigSection):
    """The named-entity model behind PERSON, ORGANIZATION, LOCATION, NRP and DATE_TIME."""

    model: str = Field(
        DEFAULT_MODEL,
        description="an installed spaCy pipeline package or a model directory of your own",
    )
    gate: Literal["capitalized", "none"] = Field(
        "capitalized",
        description="capitalized: read only sentences that can hold a name (a capitalised word "
        "after the first, or letters outside ASCII); none: read every sentence (slower)",
    )
    whole_below_words: int = Field(
        40,
        ge=0,
        description="texts of fewer words are read whole whatever the gate (a few ms on a CPU; "
        "the gate would only lose names)",
    )
    labels: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_LABELS),
        description="the model's entity label -> span type (one of PERSON, ORGANIZATION, "
        "LOCATION, NRP, DATE_TIME)",
    )

    @field_validator("labels")
    @classmethod
    def _entity_types(cls, labels: dict[str, str]) -> dict[str, str]:
        unknown = set(labels.values()) - ENTITY_TYPES
        if unknown:
            raise ValueError(f"labels map to unknown span types {sorted(unknown)}")
        return labels


class PolicyConfig(ConfigSection):
    """Profiles, and the one used for callers whose groups name none."""

    enabled: bool = True
    file: str | None = Field(
        None,
        description="a YAML file holding this section; re-read whenever it changes, so policy "
        "edits apply to the next request without a restart (a broken edit is refused, logged, "
        "and the last good policy stays)",
    )
    topics_file: str | None = Field(
        None,
        description="a YAML file of topic definitions (shape: gateway/policy/topics.yaml, "
        "the packaged example used when unset); re-read whenever it changes",
    )
    jailbreak_corpus: str | None = Field(
        None,
        description="a YAML file of known attack prompts for the similarity signal (shape: "
        "gateway/policy/jailbreak_corpus.yaml, the packaged one used when unset)",
    )
    ner: NerConfig = Field(default_factory=lambda: NerConfig())
    jailbreak_classifier: str | None = Field(
        None,
        description="a jailbreak classifier weights file (.npz, the layout of "
        "gateway/policy/jailbreak_classifier.npz, the packaged one used when unset)",
    )
    dry_run: bool = Field(False, description="record decisions; never block or redact")
    default_profile: str = "default"
    profiles: dict[str, PolicyProfile] = Field(default_factory=lambda: {"default": PolicyProfile()})

    @field_validator("profiles")
    @classmethod
    def _has_profiles(cls, profiles: dict[str, PolicyProfile]) -> dict[str, PolicyProfile]:
        if not profiles:
            raise ValueError("at least one profile is needed")
        return profiles

    def dry_run_for(self, profile: PolicyProfile) -> bool:
        """Whether decisions under `profile` are only recorded (globally or per profile)."""
        return self.dry_run or profile.dry_run
