"""LdapDirectory against a real OpenLDAP slapd (tests/servers/slapd.py): logins, groups,
injection, caching, TLS and outages."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError

from gateway.errors import AuthError, ServiceUnavailable
from gateway.identity.ldap import LdapAttributes, LdapConfig, LdapDirectory
from gateway.identity.ldap_syntax import escape_dn_value, escape_filter_value
from tests.servers.slapd import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    GROUPS,
    PEOPLE,
    PEOPLE_SEEDED,
    ROBOT,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
)
from tests.support import free_port, require_binary

TEMPLATE = f"uid={{username}},{PEOPLE}"
TTL_S = 60.0
# How a directory finds the user: search-then-bind, or bind to a DN built from the username.
MODES: dict[str, dict[str, Any]] = {
    "search": {},
    "template": {"user_search_base": None, "user_dn_template": TEMPLATE},
}

MakeDirectory = Callable[..., LdapDirectory]


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One seeded slapd with LDAPS and StartTLS for the module; tests must not change it
    (except for dave's password, which the one test that changes it puts back)."""
    binary = require_binary("slapd", "/usr/sbin/slapd")
    with Slapd(binary, tmp_path_factory.mktemp("slapd"), tls=True) as server:
        yield server


@pytest.fixture
def lone_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A slapd of the test's own (no TLS), for tests that stop or restart it."""
    binary = require_binary("slapd", "/usr/sbin/slapd")
    with Slapd(binary, tmp_path) as server:
        yield server


def _config(server: Slapd, **overrides: Any) -> LdapConfig:
    fields: dict[str, Any] = {
        "url": server.url,
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD,
        "user_search_base": PEOPLE,
        "group_search_base": GROUPS,
        "cache_ttl_s": TTL_S,
    }
    return LdapConfig(**(fields | overrides))


# Tests that count a login as exactly one bind use one worker thread. With several, a call can
# land on a thread that has never been used (ThreadPoolExecutor marks a worker idle only after
# the awaiting coroutine has already been resumed) and that thread's first service bind would
# be counted too.
ONE_THREAD = {"pool_size": 1}


@pytest_asyncio.fixture
async def make_directory(slapd: Slapd) -> AsyncIterator[MakeDirectory]:
    """Builds directories on the module's slapd (search-then-bind unless overridden)."""
    made: list[LdapDirectory] = []

    def make(
        *, server: Slapd = slapd, clock: Callable[[], float] | None = None, **overrides: Any
    ) -> LdapDirectory:
        directory = LdapDirectory(_config(server, **overrides), clock=clock or Clock())
        made.append(directory)
        return directory

    yield make
    for directory in made:
        await directory.aclose()


# --- who the user is -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_search_then_bind_maps_the_entry_and_nested_groups_to_a_principal(
    make_directory: MakeDirectory,
) -> None:
    principal = await make_directory().authenticate("alice", ALICE.password)

    assert principal.user_id == "alice"
    assert principal.auth_method == "ldap"
    assert principal.email == ALICE.mail
    assert principal.display_name == ALICE.cn
    assert principal.department == "R&D"
    assert principal.title == ALICE.title
    # ml-platform directly; engineering because it contains ml-platform.
    assert principal.groups == ("engineering", "ml-platform")


@pytest.mark.asyncio
async def test_direct_bind_template_authenticates_and_reads_the_users_own_entry(
    make_directory: MakeDirectory,
) -> None:
    directory = make_directory(
        user_search_base=None, user_dn_template=TEMPLATE, bind_dn=None, bind_password=None
    )

    principal = await directory.authenticate("bob", BOB.password)

    assert (principal.user_id, principal.email, principal.department) == (
        "bob",
        BOB.mail,
        "Finance",
    )
    assert principal.groups == ("finance",)


@pytest.mark.asyncio
async def test_anonymous_search_then_bind_works_without_a_service_account(
    make_directory: MakeDirectory,
) -> None:
    directory = make_directory(bind_dn=None, bind_password=None)

    assert (await directory.authenticate("carol", CAROL.password)).groups == ("contractors",)


@pytest.mark.asyncio
async def test_the_user_id_comes_from_the_directory_not_from_the_typed_name(
    make_directory: MakeDirectory,
) -> None:
    principal = await make_directory().authenticate("ALICE", ALICE.password)

    assert principal.user_id == "alice"


@pytest.mark.asyncio
async def test_the_attribute_mapping_decides_which_attribute_fills_each_field(
    make_directory: MakeDirectory,
) -> None:
    attributes = LdapAttributes(user_id="mail", display_name="sn", department="title")

    principal = await make_directory(attributes=attributes).authenticate("bob", BOB.password)

    assert (principal.user_id, principal.display_name, principal.department) == (
        BOB.mail,
        "Marley",
        BOB.title,
    )


# --- groups ----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "source",
    [
        pytest.param({"group_search_base": None}, id="memberOf-only"),
        pytest.param({"attributes": LdapAttributes(member_of=None)}, id="group-search-only"),
        pytest.param({}, id="both"),
    ],
)
async def test_nested_groups_resolve_from_memberof_or_from_group_searches(
    make_directory: MakeDirectory, source: dict[str, Any]
) -> None:
    directory = make_directory(**source)

    assert (await directory.authenticate("alice", ALICE.password)).groups == (
        "engineering",
        "ml-platform",
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "source",
    [
        pytest.param({"group_search_base": None}, id="memberOf-only"),
        pytest.param({"attributes": LdapAttributes(member_of=None)}, id="group-search-only"),
    ],
)
async def test_a_group_membership_loop_ends_and_names_each_group_once(
    make_directory: MakeDirectory, source: dict[str, Any]
) -> None:
    # erin is in engineering and loop-a; loop-a and loop-b contain each other.
    principal = await make_directory(**source).authenticate("erin", ERIN.password)

    assert principal.groups == ("engineering", "loop-a", "loop-b")


@pytest.mark.asyncio
@pytest.mark.parametrize("limits", [{"nested_groups": False}, {"nested_group_depth": 1}])
async def test_without_nesting_only_direct_groups_count(
    make_directory: MakeDirectory, limits: dict[str, Any]
) -> None:
    principal = await make_directory(**limits).authenticate("alice", ALICE.password)

    assert principal.groups == ("ml-platform",)


@pytest.mark.asyncio
async def test_a_user_in_no_group_has_no_groups(make_directory: MakeDirectory) -> None:
    assert (await make_directory().authenticate("dave", DAVE.password)).groups == ()


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("alice", "wrong", id="wrong-password"),
        pytest.param("mallory", "wrong", id="unknown-user"),
        pytest.param("alice", BOB.password, id="someone-elses-password"),
    ],
)
@pytest.mark.parametrize("mode", MODES)
async def test_bad_credentials_get_one_answer_that_does_not_reveal_whether_the_user_exists(
    make_directory: MakeDirectory, username: str, password: str, mode: str
) -> None:
    with pytest.raises(AuthError) as refused:
        await make_directory(**MODES[mode]).authenticate(username, password)

    assert (refused.value.status, refused.value.code, refused.value.message) == (
        401,
        "invalid_credentials",
        "Incorrect username or password.",
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", MODES)
async def test_an_empty_password_never_authenticates_and_never_reaches_the_directory(
    make_directory: MakeDirectory, slapd: Slapd, mode: str
) -> None:
    # LDAP answers a DN with an empty password as an "unauthenticated bind": success.
    directory = make_directory(**MODES[mode])
    binds = slapd.bind_count()

    with pytest.raises(AuthError):
        await directory.authenticate("alice", "")

    assert slapd.bind_count() == binds


@pytest.mark.asyncio
async def test_an_ambiguous_user_filter_match_is_refused(make_directory: MakeDirectory) -> None:
    directory = make_directory(user_filter="(|(uid={username})(uid=bob))")

    with pytest.raises(AuthError):
        await directory.authenticate("alice", ALICE.password)


INJECTIONS = [
    "*",
    "a*",
    "alice*",
    "*)(uid=*",
    "alice)(uid=*",
    "*)(|(uid=*",
    "alice)(|(uid=*)",
    "alice)",
    "(uid=alice)",
    "alice\\",
    "alice\x00",
    "alice\x00)(uid=*",
]


@pytest.mark.asyncio
@pytest.mark.parametrize("username", INJECTIONS)
async def test_filter_injection_in_the_username_matches_nobody(
    make_directory: MakeDirectory, username: str
) -> None:
    directory = make_directory()

    with pytest.raises(AuthError):
        await directory.authenticate(username, ALICE.password)
    assert await directory.lookup(username) is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "username",
    [
        "alice,ou=people",
        f"alice,{PEOPLE}",
        "x,dc=example",
        "alice+cn=Alice Liddell",
        "cn=admin,dc=example,dc=org",
        "alice\\",
        "alice\x00",
    ],
)
async def test_dn_injection_in_template_mode_binds_as_nobody(
    make_directory: MakeDirectory, username: str
) -> None:
    directory = make_directory(**MODES["template"])

    with pytest.raises(AuthError):
        await directory.authenticate(username, ALICE.password)
    assert await directory.lookup(username) is None


@pytest.mark.asyncio
async def test_a_comma_in_the_username_cannot_reach_an_entry_below_another_user(
    make_directory: MakeDirectory,
) -> None:
    # Unescaped, "robot,uid=bob" would make the DN of the entry filed under bob's.
    directory = make_directory(**MODES["template"])

    with pytest.raises(AuthError):
        await directory.authenticate("robot,uid=bob", ROBOT.password)
    assert await directory.lookup("robot,uid=bob") is None


def test_filter_values_are_escaped_as_rfc_4515_says() -> None:
    assert escape_filter_value("a*(b)\\c\x00") == r"a\2a\28b\29\5cc\00"


def test_dn_values_are_escaped_as_rfc_4514_says() -> None:
    assert escape_dn_value('a,b+c"d\\e<f>g;h=i') == r"a\,b\+c\"d\\e\<f\>g\;h\=i"
    assert escape_dn_value("#lead and trail ") == r"\#lead and trail\ "
    assert escape_dn_value(" x\x00") == r"\ x\00"


# --- cache -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_second_login_within_the_ttl_makes_no_bind(
    make_directory: MakeDirectory, slapd: Slapd
) -> None:
    directory = make_directory()
    first = await directory.authenticate("alice", ALICE.password)
    binds = slapd.bind_count()

    assert await directory.authenticate("alice", ALICE.password) == first
    assert slapd.bind_count() == binds


@pytest.mark.asyncio
async def test_a_login_after_the_ttl_binds_again(
    make_directory: MakeDirectory, slapd: Slapd
) -> None:
    clock = Clock()
    directory = make_directory(clock=clock, **ONE_THREAD)
    await directory.authenticate("alice", ALICE.password)
    binds = slapd.bind_count()

    clock.advance(TTL_S + 1)
    await directory.authenticate("alice", ALICE.password)

    assert slapd.bind_count() == binds + 1


@pytest.mark.asyncio
async def test_a_different_password_goes_to_the_directory_not_the_cache(
    make_directory: MakeDirectory, slapd: Slapd
) -> None:
    directory = make_directory(**ONE_THREAD)
    await directory.authenticate("alice", ALICE.password)
    binds = slapd.bind_count()

    with pytest.raises(AuthError):
        await directory.authenticate("alice", ALICE.password + "x")

    assert slapd.bind_count() == binds + 1


@pytest.mark.asyncio
async def test_after_a_password_change_the_new_one_works_and_replaces_the_cached_old_one(
    make_directory: MakeDirectory, slapd: Slapd
) -> None:
    directory = make_directory()
    await directory.authenticate("dave", DAVE.password)
    slapd.set_password("dave", "new-pod-bay")
    try:
        assert (await directory.authenticate("dave", "new-pod-bay")).user_id == "dave"
        with pytest.raises(AuthError):
            await directory.authenticate("dave", DAVE.password)
    finally:
        slapd.set_password("dave", DAVE.password)


@pytest.mark.asyncio
async def test_a_zero_ttl_turns_the_cache_off(make_directory: MakeDirectory, slapd: Slapd) -> None:
    directory = make_directory(cache_ttl_s=0, **ONE_THREAD)
    await directory.authenticate("alice", ALICE.password)
    binds = slapd.bind_count()

    await directory.authenticate("alice", ALICE.password)

    assert slapd.bind_count() == binds + 1


@pytest.mark.asyncio
async def test_cached_logins_and_lookups_outlive_an_outage_until_the_ttl_passes(
    make_directory: MakeDirectory, lone_slapd: Slapd
) -> None:
    clock = Clock()
    directory = make_directory(server=lone_slapd, clock=clock)
    await directory.authenticate("alice", ALICE.password)
    await directory.lookup("bob")
    lone_slapd.stop()

    assert (await directory.authenticate("alice", ALICE.password)).user_id == "alice"
    assert (await directory.lookup("bob")) is not None
    with pytest.raises(ServiceUnavailable):
        await directory.authenticate("alice", "not-what-was-cached")

    clock.advance(TTL_S + 1)
    with pytest.raises(ServiceUnavailable):
        await directory.authenticate("alice", ALICE.password)
    with pytest.raises(ServiceUnavailable):
        await directory.lookup("bob")


# --- the directory failing -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_unreachable_directory_is_a_503_not_a_401(make_directory: MakeDirectory) -> None:
    directory = make_directory(url=f"ldap://127.0.0.1:{free_port()}", timeout_s=1)

    with pytest.raises(ServiceUnavailable) as down:
        await directory.authenticate("alice", ALICE.password)
    assert (down.value.status, down.value.code) == (503, "directory_unavailable")
    with pytest.raises(ServiceUnavailable):
        await directory.lookup("alice")


@pytest.mark.asyncio
async def test_a_silent_directory_is_a_503_within_the_timeout_and_never_blocks_the_loop(
    make_directory: MakeDirectory,
) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    # The kernel completes the TCP handshake for a listening socket nobody accepts from.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        directory = make_directory(url=f"ldap://127.0.0.1:{port}", timeout_s=1)
        ticker = asyncio.create_task(tick())
        started = time.monotonic()

        with pytest.raises(ServiceUnavailable):
            await directory.authenticate("alice", ALICE.password)
        ticker.cancel()

    assert time.monotonic() - started < 5
    # The loop kept running other work while the directory call waited in a thread.
    assert ticks > 10


@pytest.mark.asyncio
async def test_pooled_connections_recover_after_the_directory_restarts(
    make_directory: MakeDirectory, lone_slapd: Slapd
) -> None:
    directory = make_directory(server=lone_slapd, cache_ttl_s=0, pool_size=1)
    await directory.authenticate("alice", ALICE.password)

    lone_slapd.stop()
    lone_slapd.start()

    assert (await directory.authenticate("alice", ALICE.password)).user_id == "alice"


@pytest.mark.asyncio
async def test_a_refused_service_account_is_a_503(make_directory: MakeDirectory) -> None:
    directory = make_directory(bind_password="not-the-service-password")

    with pytest.raises(ServiceUnavailable) as refused:
        await directory.authenticate("alice", ALICE.password)
    assert refused.value.status == 503


@pytest.mark.asyncio
async def test_a_missing_search_base_is_a_503(make_directory: MakeDirectory) -> None:
    directory = make_directory(user_search_base="ou=nowhere,dc=example,dc=org")

    with pytest.raises(ServiceUnavailable):
        await directory.authenticate("alice", ALICE.password)


# --- TLS -------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["start_tls", "ldaps"])
async def test_tls_verified_by_the_configured_ca_authenticates(
    make_directory: MakeDirectory, slapd: Slapd, transport: str
) -> None:
    tls: dict[str, Any] = (
        {"start_tls": True} if transport == "start_tls" else {"url": slapd.ldaps_url}
    )
    directory = make_directory(ca_file=slapd.ca_file, **tls)

    assert (await directory.authenticate("alice", ALICE.password)).user_id == "alice"


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["start_tls", "ldaps"])
async def test_a_certificate_from_an_untrusted_ca_is_refused(
    make_directory: MakeDirectory, slapd: Slapd, transport: str
) -> None:
    tls: dict[str, Any] = (
        {"start_tls": True} if transport == "start_tls" else {"url": slapd.ldaps_url}
    )
    directory = make_directory(ca_file=slapd.untrusted_ca_file, **tls)

    with pytest.raises(ServiceUnavailable) as refused:
        await directory.authenticate("alice", ALICE.password)
    assert refused.value.code == "directory_tls_failed"


@pytest.mark.asyncio
async def test_start_tls_against_a_server_without_tls_fails_clearly(
    make_directory: MakeDirectory, lone_slapd: Slapd
) -> None:
    directory = make_directory(server=lone_slapd, start_tls=True)

    with pytest.raises(ServiceUnavailable, match="TLS") as refused:
        await directory.authenticate("alice", ALICE.password)
    assert refused.value.code == "directory_tls_failed"


# --- lookup and concurrency ------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", MODES)
async def test_lookup_resolves_a_user_without_a_password_and_none_for_a_stranger(
    make_directory: MakeDirectory, mode: str
) -> None:
    directory = make_directory(**MODES[mode])

    found = await directory.lookup("alice")

    assert found is not None
    assert (found.user_id, found.email, found.groups) == (
        "alice",
        ALICE.mail,
        ("engineering", "ml-platform"),
    )
    assert await directory.lookup("mallory") is None


@pytest.mark.asyncio
async def test_twenty_concurrent_logins_each_get_their_own_answer(
    make_directory: MakeDirectory,
) -> None:
    # Fewer connections than callers, no cache: connections are shared in turn, and a
    # wrong password on one must never leak into the next caller's answer.
    directory = make_directory(cache_ttl_s=0, pool_size=4)
    attempts = [
        (person.uid, person.password if n % 4 else "wrong")
        for n, person in enumerate(PEOPLE_SEEDED * 4)
    ]

    results = await asyncio.gather(
        *(directory.authenticate(uid, password) for uid, password in attempts),
        return_exceptions=True,
    )

    for (uid, password), result in zip(attempts, results, strict=True):
        if password == "wrong":
            assert isinstance(result, AuthError), uid
        else:
            assert not isinstance(result, BaseException), (uid, result)
            assert result.user_id == uid


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({}, "exactly one of user_search_base and user_dn_template"),
        ({"user_search_base": PEOPLE, "user_dn_template": TEMPLATE}, "exactly one"),
        ({"user_search_base": PEOPLE, "bind_dn": SERVICE_DN}, "bind_dn needs bind_password"),
        (
            {"user_search_base": PEOPLE, "bind_dn": SERVICE_DN, "bind_password": ""},
            "bind_dn needs bind_password",
        ),
        ({"user_dn_template": "uid=x,ou=people"}, "must contain {username}"),
        ({"user_search_base": PEOPLE, "user_filter": "uid={username}"}, "parenthesised"),
        ({"user_search_base": PEOPLE, "group_filter": "(member=x)"}, "{user_dn}"),
        ({"user_search_base": PEOPLE, "url": "http://x"}, "ldap://"),
        ({"user_search_base": PEOPLE, "url": "ldaps://x", "start_tls": True}, "start_tls"),
        ({"user_search_base": PEOPLE, "bind_pasword": "typo"}, "bind_pasword"),
    ],
)
def test_config_mistakes_are_refused_naming_the_problem(
    fields: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(complaint)):
        LdapConfig(**({"url": "ldap://127.0.0.1"} | fields))
