"""TrustedHeaderAuth: identity headers count only when the authenticating proxy sent them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from starlette.datastructures import Headers

from gateway.errors import AuthError
from gateway.identity.principal import Principal
from gateway.identity.trusted_header import TrustedHeaderAuth, TrustedHeaderConfig

SECRET = "proxy-secret-0123456789"


# The headers oauth2-proxy sets (and strips from what the client sent).
OAUTH2_PROXY = {
    "email_header": "x-forwarded-email",
    "name_header": "x-forwarded-preferred-username",
    "groups_header": "x-forwarded-groups",
}


def auth(**fields: Any) -> TrustedHeaderAuth:
    return TrustedHeaderAuth(TrustedHeaderConfig.model_validate({**OAUTH2_PROXY, **fields}))


def headers(**values: str) -> Headers:
    """Request headers as the ASGI app sees them: x_forwarded_user= -> x-forwarded-user."""
    return Headers({name.replace("_", "-"): value for name, value in values.items()})


ALICE = headers(
    x_forwarded_user="alice",
    x_forwarded_email="alice@example.com",
    x_forwarded_preferred_username="Alice Liddell",
    x_forwarded_groups="eng,ml-platform",
)


def untrusted(authenticator: TrustedHeaderAuth, sent: Headers, client_host: str | None) -> None:
    with pytest.raises(AuthError) as caught:
        authenticator.authenticate(sent, client_host)
    assert (caught.value.status, caught.value.code) == (401, "untrusted_proxy")


def test_headers_from_a_trusted_ipv4_range_give_the_principal() -> None:
    principal = auth(trusted_proxies=["10.0.0.0/8"]).authenticate(ALICE, "10.20.30.40")

    assert principal == Principal(
        user_id="alice",
        auth_method="trusted_header",
        email="alice@example.com",
        display_name="Alice Liddell",
        groups=("eng", "ml-platform"),
    )


@pytest.mark.parametrize(
    ("proxies", "client_host"),
    [(["fd00::/8"], "fd12:3456::1"), (["::1"], "::1"), (["10.0.0.0/8"], "::ffff:10.0.0.7")],
)
def test_headers_from_a_trusted_ipv6_address_are_accepted(
    proxies: list[str], client_host: str
) -> None:
    principal = auth(trusted_proxies=proxies).authenticate(ALICE, client_host)

    assert principal is not None and principal.user_id == "alice"


@pytest.mark.parametrize("client_host", ["192.168.1.5", "11.0.0.1", "fd00::1", None, "not-an-ip"])
def test_spoofed_identity_header_from_an_untrusted_address_is_refused(
    client_host: str | None,
) -> None:
    untrusted(auth(trusted_proxies=["10.0.0.0/8", "::1"]), ALICE, client_host)


@pytest.mark.parametrize("user", [None, "", "   "])
def test_request_without_an_identity_header_is_left_to_other_methods(user: str | None) -> None:
    sent = headers(x_forwarded_email="alice@example.com")
    if user is not None:
        sent = headers(x_forwarded_user=user)

    assert auth(trusted_proxies=["10.0.0.0/8"]).authenticate(sent, "192.168.1.5") is None


def test_shared_secret_alone_authenticates_the_proxy_from_any_address() -> None:
    sent = headers(x_forwarded_user="alice", x_raygate_proxy_secret=SECRET)

    principal = auth(shared_secret=SECRET).authenticate(sent, "203.0.113.9")

    assert principal is not None and principal.user_id == "alice"


@pytest.mark.parametrize("presented", [None, "", "wrong-secret-0123456789", SECRET + "x", "sécret"])
def test_missing_or_wrong_shared_secret_is_refused(presented: str | None) -> None:
    sent = {"x-forwarded-user": "alice"}
    if presented is not None:
        sent["x-raygate-proxy-secret"] = presented

    untrusted(auth(shared_secret=SECRET), Headers(sent), "10.0.0.1")


def test_both_address_and_secret_are_required_when_both_are_configured() -> None:
    both = auth(trusted_proxies=["10.0.0.0/8"], shared_secret=SECRET)
    with_secret = headers(x_forwarded_user="alice", x_raygate_proxy_secret=SECRET)

    untrusted(both, with_secret, "192.168.1.5")  # right secret, wrong address
    untrusted(both, headers(x_forwarded_user="alice"), "10.0.0.1")  # right address, no secret
    principal = both.authenticate(with_secret, "10.0.0.1")
    assert principal is not None and principal.user_id == "alice"


@pytest.mark.parametrize(
    ("sent", "groups"),
    [
        (" eng , ml-platform,,  , eng ", ("eng", "ml-platform")),
        ("solo", ("solo",)),
        (",", ()),
        ("", ()),
        (None, ()),
    ],
)
def test_groups_header_is_split_on_commas_ignoring_blanks(
    sent: str | None, groups: tuple[str, ...]
) -> None:
    values = {"x-forwarded-user": "alice"}
    if sent is not None:
        values["x-forwarded-groups"] = sent

    principal = auth(trusted_proxies=["127.0.0.1"]).authenticate(Headers(values), "127.0.0.1")

    assert principal is not None and principal.groups == groups


def test_configured_header_names_match_case_insensitively() -> None:
    authenticator = auth(
        trusted_proxies=["127.0.0.1"],
        user_header="X-Auth-Request-User",
        email_header="X-Auth-Request-Email",
        name_header=None,
        department_header="X-Auth-Request-Department",
    )
    sent = Headers(
        {
            "x-auth-request-user": "bob",
            "x-auth-request-email": "bob@example.com",
            "x-auth-request-department": "Finance",
            "x-forwarded-preferred-username": "ignored",
        }
    )

    principal = authenticator.authenticate(sent, "127.0.0.1")

    assert principal is not None
    assert (principal.user_id, principal.email, principal.display_name, principal.department) == (
        "bob",
        "bob@example.com",
        None,
        "Finance",
    )


def test_identity_header_sent_twice_is_refused() -> None:
    # The client's own header first, the proxy's appended after it.
    sent = Headers(raw=[(b"x-forwarded-user", b"admin"), (b"x-forwarded-user", b"alice")])

    untrusted(auth(trusted_proxies=["127.0.0.1"]), sent, "127.0.0.1")


def test_utf8_header_values_are_decoded() -> None:
    sent = Headers(
        raw=[
            (b"x-forwarded-user", b"jose"),
            (b"x-forwarded-preferred-username", "José Núñez".encode()),
        ]
    )

    principal = auth(trusted_proxies=["127.0.0.1"]).authenticate(sent, "127.0.0.1")

    assert principal is not None and principal.display_name == "José Núñez"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"shared_secret": ""},
        {"trusted_proxies": []},
        {"trusted_proxies": ["10.0.0.0/33"]},
        {"trusted_proxies": ["proxy.internal"]},
        {"shared_secret": "short"},
        {"trusted_proxies": ["10.0.0.1"], "unknown": True},
    ],
)
def test_config_refuses_an_unauthenticated_or_malformed_proxy(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TrustedHeaderConfig.model_validate(fields)


def test_config_normalises_header_names() -> None:
    config = TrustedHeaderConfig(trusted_proxies=["10.0.0.1"], user_header=" X-Remote-User ")

    assert config.user_header == "x-remote-user"
