"""Detectors for secrets: cloud and provider API keys, private keys, JWTs and passwords.

Provider keys have distinctive prefixes and are reported on their own; values that look
like any other random string (an AWS secret key, a password) are reported only in context
(a key name or a connection string around them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.policy.spans import Span


@dataclass(frozen=True, slots=True)
class _KeyPattern:
    type: str
    detector: str
    pattern: re.Pattern[str]
    confidence: float
    # Substrings that every match contains: the regex only runs when one is present,
    # which keeps a prompt without any key cheap (a substring test is far faster).
    hints: tuple[str, ...]


# Self-identifying tokens: the prefix alone makes a false positive unlikely.
_PREFIXED: tuple[_KeyPattern, ...] = (
    _KeyPattern(
        "AWS_ACCESS_KEY_ID",
        "aws_access_key_id",
        re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z0-9]{16}\b"),
        0.95,
        ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA"),
    ),
    # Anthropic before OpenAI: both start with "sk-"; the OpenAI pattern excludes "sk-ant-".
    _KeyPattern(
        "ANTHROPIC_API_KEY",
        "anthropic_api_key",
        re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
        0.97,
        ("sk-ant-",),
    ),
    _KeyPattern(
        "OPENAI_API_KEY",
        "openai_api_key",
        re.compile(r"\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
        0.9,
        ("sk-",),
    ),
    _KeyPattern(
        "GITHUB_TOKEN",
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
        0.97,
        ("gh", "github_pat_"),
    ),
    _KeyPattern(
        "SLACK_TOKEN",
        "slack_token",
        re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        0.95,
        ("xox",),
    ),
    _KeyPattern(
        "GOOGLE_API_KEY",
        "google_api_key",
        re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])"),
        0.95,
        ("AIza",),
    ),
    _KeyPattern(
        "PRIVATE_KEY",
        "pem_private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"[\s\S]{0,16384}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        ),
        0.99,
        ("PRIVATE KEY",),
    ),
    _KeyPattern(
        "JWT",
        "jwt",
        # header.payload.signature, base64url; both header and payload are JSON objects,
        # so they start with "eyJ" ('{"').
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
        0.95,
        ("eyJ",),
    ),
)

# 40 base64 characters after a key name that says it is an AWS secret.
_AWS_SECRET = re.compile(
    r"(?i)(?:aws_?secret_?access_?key|aws_?secret(?:_?key)?|secret_?access_?key)"
    r"[\"']?\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
)
# scheme://user:password@host: the password is the part between ":" and "@".
_URL_PASSWORD = re.compile(
    r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,30}://[^\s:/@]+:(?P<value>[^\s@/]{1,128})@[\w.-]+"
)
# password=..., "password": "...", PASSWORD: ... ; secrets and tokens the same way.
_ASSIGNMENT = re.compile(
    r"(?i)\b(?P<key>password|passwd|pwd|passphrase|secret|client_secret|api_?key"
    r"|access_?token|auth_?token)[\"']?\s*[:=]\s*(?P<quote>[\"']?)"
    r"(?P<value>[^\s\"',;]{4,256})(?P=quote)"
)
_PLACEHOLDER_VALUES = frozenset({"none", "null", "true", "false", "xxxx", "****", "changeme"})


def detect_credentials(text: str) -> Iterator[Span]:
    """All credential spans: prefixed provider keys, PEM blocks, JWTs, and secrets in
    context (AWS secret keys, URL passwords, ``password=`` assignments)."""
    for key in _PREFIXED:
        if not any(h in text for h in key.hints):
            continue
        for m in key.pattern.finditer(text):
            yield Span(m.start(), m.end(), key.type, m.group(), key.confidence, key.detector)
    if "=" in text or ":" in text:
        for m in _AWS_SECRET.finditer(text):
            s, e = m.span("value")
            yield Span(s, e, "AWS_SECRET_KEY", m.group("value"), 0.9, "aws_secret_key")
        for m in _ASSIGNMENT.finditer(text):
            value = m.group("value")
            if value.lower() in _PLACEHOLDER_VALUES or value.startswith(("$", "{", "<")):
                continue  # a template or reference, not a secret
            kind = m.group("key").lower()
            type_ = "PASSWORD" if kind.startswith(("pass", "pwd")) else "SECRET"
            s, e = m.span("value")
            yield Span(s, e, type_, value, 0.8, "assigned_secret")
    if "://" in text:
        for m in _URL_PASSWORD.finditer(text):
            s, e = m.span("value")
            yield Span(s, e, "PASSWORD", m.group("value"), 0.9, "url_password")
