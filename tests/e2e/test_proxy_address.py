"""Through `raygate up`'s real front (HAProxy through raygate-haproxy, with the proxy secret
`raygate up` makes): the gateway sees each client's own address, and a client cannot take
another's (the trusted proxy's, 127.0.0.2 in gateway.yaml) by naming it in a header, neither
in X-Forwarded-For nor in the header raygate-haproxy sets. Issue #13, finding 9, and
docs/security.md."""

from __future__ import annotations

import uuid

import httpx
import openai

from tests.e2e.conftest import Gateway


def test_x_forwarded_for_does_not_make_a_local_client_the_proxy(gateway: Gateway) -> None:
    response = httpx.get(
        f"{gateway.v1}/models",
        headers={"x-forwarded-user": "ceo", "x-forwarded-for": "127.0.0.2"},
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "untrusted_proxy"


def test_the_header_raygate_haproxy_sets_cannot_be_forged_by_a_client(gateway: Gateway) -> None:
    response = httpx.get(
        f"{gateway.v1}/models",
        headers={
            "x-forwarded-user": "ceo",
            "x-raygate-client": "127.0.0.2",
            "x-raygate-proxy-secret": "guessed",
        },
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "untrusted_proxy"


def test_the_real_proxy_address_is_still_trusted(gateway: Gateway) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, base_url=gateway.base_url) as client:
        response = client.get("/v1/models", headers={"x-forwarded-user": "erin"})
    assert response.status_code == 200, response.text


def test_the_audit_record_holds_the_clients_own_address(gateway: Gateway) -> None:
    user = f"addressed-{uuid.uuid4().hex[:6]}"
    secret = gateway.issue_key(user)
    http = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"))
    client = openai.OpenAI(base_url=gateway.v1, api_key=secret, max_retries=0, http_client=http)
    client.chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": "Where am I calling from?"}]
    )
    http.close()

    (record,) = gateway.audit_records(1, user=user)
    assert record["client_address"] == "127.0.0.3"
