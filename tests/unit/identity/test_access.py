"""Group -> model access."""

from __future__ import annotations

import pytest

from gateway.config import AccessConfig, GroupAccess
from gateway.errors import PermissionDenied
from gateway.identity.access import grant_for
from gateway.identity.principal import Principal

ACCESS = AccessConfig(
    default=GroupAccess(models=["sim-small"]),
    groups={
        "engineering": GroupAccess(models=["*"], policy="default"),
        "contractors": GroupAccess(models=["sim-small", "gpt-4o-*"], policy="strict"),
    },
)


def test_a_caller_in_no_listed_group_gets_the_default() -> None:
    grant = grant_for(Principal("x", "api_key", groups=("marketing",)), ACCESS)
    assert grant.groups == () and grant.models == ("sim-small",)


def test_models_are_the_union_and_policy_comes_from_the_first_group_in_file_order() -> None:
    caller = Principal("x", "ldap", groups=("contractors", "engineering"))
    grant = grant_for(caller, ACCESS)
    assert grant.policy == "default" and grant.groups == ("engineering", "contractors")
    assert grant.allows(caller, "anything")


def test_patterns_match_aliases_and_nothing_else() -> None:
    caller = Principal("x", "ldap", groups=("contractors",))
    grant = grant_for(caller, ACCESS)
    assert grant.allows(caller, "gpt-4o-mini")
    assert not grant.allows(caller, "gpt-4o")
    with pytest.raises(PermissionDenied) as caught:
        grant.check(caller, "claude")
    assert caught.value.status == 403 and caught.value.code == "model_not_allowed"


def test_a_keys_own_scope_narrows_what_the_groups_allow() -> None:
    caller = Principal("x", "api_key", groups=("engineering",), model_scope=("sim-*",))
    grant = grant_for(caller, ACCESS)
    assert grant.allows(caller, "sim-small") and not grant.allows(caller, "gpt-4o")
