"""The `policy` config section: profiles of detector actions, chosen per group.

    policy:
      default_profile: default
      dry_run: false            # decide and record, but never block or change a request
      profiles:
        default:
          pii: {"*": monitor, credentials: redact}
          jailbreak: {action: monitor}
        strict:                  # e.g. `access.groups.contractors.policy: strict`
          pii: {"*": redact, CREDIT_CARD: block, US_SSN: block, credentials: block}
          jailbreak: {action: block, threshold: 0.45}

Keys of `pii` are span types (EMAIL, CREDIT_CARD, ...), `credentials` (every secret type) or
`*` (every other type); the most specific key wins.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.policy.detection import ALL_TYPES

Action = Literal["allow", "monitor", "redact", "block"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JailbreakPolicy(_Section):
    """What a jailbreak / prompt-injection score at or over `threshold` does."""

    action: Action = "monitor"
    threshold: float | None = Field(
        None, ge=0, le=1, description="unset: the packaged rules' threshold"
    )


class PolicyProfile(_Section):
    """Detector actions applied to a request's input."""

    pii: dict[str, Action] = Field(
        default_factory=lambda: _default_pii(),
        description="span type, 'credentials' or '*' -> action",
    )
    jailbreak: JailbreakPolicy = Field(default_factory=JailbreakPolicy)
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

    @field_validator("pii", "output")
    @classmethod
    def _known_types(cls, rules: dict[str, Action]) -> dict[str, Action]:
        unknown = set(rules) - ALL_TYPES - {"*", "credentials"}
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


class PolicyConfig(_Section):
    """Profiles, and the one used for callers whose groups name none."""

    enabled: bool = True
    file: str | None = Field(
        None,
        description="a YAML file holding this section; re-read whenever it changes, so policy "
        "edits apply to the next request without a restart (a broken edit is refused, logged, "
        "and the last good policy stays)",
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
