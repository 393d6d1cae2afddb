"""What a caller may do, from their groups: models, policy profile, budget."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from gateway.config import AccessConfig
from gateway.errors import PermissionDenied
from gateway.identity.principal import Principal


@dataclass(frozen=True, slots=True)
class Grant:
    """A caller's resolved access."""

    models: tuple[str, ...]  # shell patterns over model aliases
    policy: str | None
    groups: tuple[str, ...]  # the configured groups it came from; () = the default

    def allows(self, principal: Principal, model: str) -> bool:
        """Whether the caller may use `model`: their groups allow it and so does their key."""
        if not any(fnmatchcase(model, pattern) for pattern in self.models):
            return False
        scope = principal.model_scope
        return scope is None or any(fnmatchcase(model, pattern) for pattern in scope)

    def check(self, principal: Principal, model: str) -> None:
        """PermissionDenied (403) unless `allows`."""
        if not self.allows(principal, model):
            raise PermissionDenied(
                f"You are not allowed to use the model {model!r}.",
                param="model",
                code="model_not_allowed",
            )


def grant_for(principal: Principal, access: AccessConfig) -> Grant:
    """The union of the models of the caller's configured groups; the policy of the first of
    them in file order; the default grant when none matches."""
    mine = [name for name in access.groups if name in principal.groups]
    if not mine:
        default = access.default
        return Grant(tuple(default.models), default.policy, ())
    first = access.groups[mine[0]]
    models = tuple(dict.fromkeys(m for name in mine for m in access.groups[name].models))
    return Grant(models, first.policy, tuple(mine))
