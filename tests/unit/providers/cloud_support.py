"""Credentials for the cloud simulators: AWS keys, a Google service account with a real RSA
key (the simulator verifies its JWT assertions), an Entra ID app registration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette

from gateway.simulator import SimulatorSettings, create_app
from tests.support.simulator import serve

AWS_KEY_ID = "AKIDRAYGATETEST00001"
AWS_SECRET = "raygate/test/secret/key/00000000000000000"
AZURE_CLIENT_ID = "6f1f0f6e-0000-4000-8000-raygatetest01"
AZURE_CLIENT_SECRET = "entra-secret-for-tests"
AZURE_TENANT = "contoso-tenant"
SA_EMAIL = "raygate@raygate-test.iam.gserviceaccount.com"
PROJECT = "raygate-test"


@dataclass(frozen=True)
class ServiceAccount:
    """A service account whose key the simulator trusts."""

    email: str
    private_pem: str
    public_pem: str

    def write(self, path: Path, token_uri: str) -> Path:
        """The account's JSON key file, pointing at `token_uri`."""
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": "raygate-test-key",
                    "private_key": self.private_pem,
                    "client_email": self.email,
                    "client_id": "1234567890",
                    "token_uri": token_uri,
                }
            )
        )
        return path


def service_account(email: str = SA_EMAIL) -> ServiceAccount:
    """A fresh RSA key pair for a service account."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return ServiceAccount(email, private, public)


def cloud_settings(account: ServiceAccount | None = None, **overrides: object) -> SimulatorSettings:
    """Simulator settings that check every cloud credential."""
    fields: dict[str, object] = {
        "answer_words": 6,
        "embedding_dim": 8,
        "aws_credentials": {AWS_KEY_ID: AWS_SECRET},
        "azure_clients": {AZURE_CLIENT_ID: AZURE_CLIENT_SECRET},
        "content_filter_terms": ["forbidden-topic"],
    }
    if account is not None:
        fields["gcp_service_accounts"] = {account.email: account.public_pem}
    fields.update(overrides)
    return SimulatorSettings.model_validate(fields)


@contextmanager
def cloud_sim(settings: SimulatorSettings) -> Iterator[tuple[Starlette, str]]:
    """The simulator on a loopback port: its app (for its state) and its URL."""
    app = create_app(settings)
    with serve(app) as url:
        yield app, url
