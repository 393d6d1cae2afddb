"""Credential and secret patterns."""

from __future__ import annotations

import pytest

from gateway.policy import CREDENTIAL_TYPES, detect

_PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx3\nabc/def+ghi=\n"
    "-----END RSA PRIVATE KEY-----"
)
_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.mark.parametrize(
    "text, type_, value",
    [
        ("key AKIAIOSFODNN7EXAMPLE in env", "AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS_SECRET_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        (
            "OPENAI_KEY sk-proj-Ab12Cd34Ef56Gh78Ij90Kl",
            "OPENAI_API_KEY",
            "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl",
        ),
        (
            "use sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv_wx",
            "ANTHROPIC_API_KEY",
            "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv_wx",
        ),
        ("token ghp_" + "a1B2" * 9, "GITHUB_TOKEN", "ghp_" + "a1B2" * 9),
        (
            "github_pat_11ABCDEFG0123456789_abcdefXYZ",
            "GITHUB_TOKEN",
            "github_pat_11ABCDEFG0123456789_abcdefXYZ",
        ),
        ("bot xoxb-1234567890-abcdefghij", "SLACK_TOKEN", "xoxb-1234567890-abcdefghij"),
        ("maps AIza" + "Sy" + "A" * 33 + " end", "GOOGLE_API_KEY", "AIzaSy" + "A" * 33),
        (f"key:\n{_PEM}\nthanks", "PRIVATE_KEY", _PEM),
        (f"Authorization: Bearer {_JWT}", "JWT", _JWT),
        ("DATABASE_URL=postgres://admin:s3cr3t!@db.internal:5432/app", "PASSWORD", "s3cr3t!"),
        ('config = {"password": "hunter22"}', "PASSWORD", "hunter22"),
        ("client_secret=Zx9_8yW7v", "SECRET", "Zx9_8yW7v"),
    ],
)
def test_credential_found(text: str, type_: str, value: str) -> None:
    spans = detect(text, types=CREDENTIAL_TYPES)
    assert [(s.type, s.text) for s in spans] == [(type_, value)]


@pytest.mark.parametrize(
    "text",
    [
        "the password field must not be empty",
        "password: ${DB_PASSWORD}",
        "set password=changeme in the example",
        "a 40-char string ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd without a key name",
        "https://example.com/path@section",
        "task-management is a skill",
    ],
)
def test_credential_near_miss_not_found(text: str) -> None:
    assert detect(text, types=CREDENTIAL_TYPES) == []


def test_anthropic_key_not_reported_as_openai_key() -> None:
    types = {s.type for s in detect("sk-ant-api03-" + "x" * 30)}
    assert types == {"ANTHROPIC_API_KEY"}
