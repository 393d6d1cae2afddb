"""Through `raygate up`'s real Serve proxy: a client on loopback cannot take the trusted
proxy's address (127.0.0.2 in gateway.yaml) by naming it in X-Forwarded-For. Issue #13,
finding 9 (uvicorn's default would rewrite the address; raygate up turns that off)."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import Gateway


def test_x_forwarded_for_does_not_make_a_local_client_the_proxy(gateway: Gateway) -> None:
    response = httpx.get(
        f"{gateway.v1}/models",
        headers={"x-forwarded-user": "ceo", "x-forwarded-for": "127.0.0.2"},
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "untrusted_proxy"


def test_the_real_proxy_address_is_still_trusted(gateway: Gateway) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, base_url=gateway.base_url) as client:
        response = client.get("/v1/models", headers={"x-forwarded-user": "erin"})
    assert response.status_code == 200, response.text
