"""Conditions on the caller: `when` / `unless` on targets and aliases."""

from __future__ import annotations

import pytest

from gateway.errors import PermissionDenied, UpstreamUnavailable
from gateway.identity.principal import Principal
from gateway.routing.config import RouteCondition
from gateway.routing.context import RouteContext, admits, matches
from tests.support.simulator import Sim
from tests.unit.routing.support import MakeRouter, chat

LAB = RouteContext(user_id="ada", groups=("staff", "lab"), department="research")


def test_each_named_dimension_must_match_and_any_value_within_one_will_do() -> None:
    assert matches(RouteCondition(groups=["lab", "other"]), LAB)
    assert matches(RouteCondition(groups=["lab"], departments=["research"]), LAB)
    assert not matches(RouteCondition(groups=["lab"], departments=["sales"]), LAB)
    assert not matches(RouteCondition(users=["bob"]), LAB)
    assert matches(RouteCondition(), LAB)


def test_without_a_context_only_the_empty_condition_matches() -> None:
    assert matches(RouteCondition(), None)
    assert not matches(RouteCondition(groups=["lab"]), None)
    assert admits(None, RouteCondition(groups=["lab"]), None)  # nobody to exclude


def test_context_is_built_from_the_principal() -> None:
    principal = Principal(
        user_id="ada", auth_method="ldap", department="research", groups=("lab",), key_id="k1"
    )
    assert RouteContext.of(principal) == RouteContext("ada", ("lab",), "research", "k1")


LOCAL_FOR_LAB = """
models:
  assistant:
    targets:
      - {provider: first, model: cloud, unless: {groups: [lab]}}
      - {provider: second, model: local}
  lab-only:
    when: {departments: [research]}
    targets: [second/local]
  nobody:
    targets: [{provider: first, model: cloud, when: {users: [root]}}]
"""


@pytest.mark.asyncio
async def test_a_group_is_kept_on_the_local_target_even_when_it_fails(
    make_router: MakeRouter, sim: Sim
) -> None:
    router = await make_router(LOCAL_FOR_LAB)
    other = await router.chat(chat("assistant"), RouteContext(user_id="bob", groups=("staff",)))
    lab = await router.chat(chat("assistant"), LAB)
    assert other.route.header() == "first/cloud"
    assert lab.route.header() == "second/local"
    await sim.fault(kind="status", status=503, match_model="local")
    with pytest.raises(UpstreamUnavailable):
        await router.chat(chat("assistant"), LAB)  # never falls over to the cloud target
    assert await sim.models_asked() == ["cloud", "local", "local"]


@pytest.mark.asyncio
async def test_alias_condition_refuses_other_callers(make_router: MakeRouter) -> None:
    router = await make_router(LOCAL_FOR_LAB)
    assert (await router.chat(chat("lab-only"), LAB)).route.target == "second/local"
    with pytest.raises(PermissionDenied) as err:
        await router.chat(chat("lab-only"), RouteContext(user_id="bob", department="sales"))
    assert err.value.code == "model_not_permitted"


@pytest.mark.asyncio
async def test_no_target_left_for_the_caller_is_permission_denied(make_router: MakeRouter) -> None:
    router = await make_router(LOCAL_FOR_LAB)
    with pytest.raises(PermissionDenied) as err:
        await router.chat(chat("nobody"), LAB)
    assert err.value.code == "no_permitted_target"
