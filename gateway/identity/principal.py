"""The Principal: the person (or service) behind a request."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller as the directory knows it; every later stage reads this, never raw headers."""

    user_id: str
    auth_method: str
    email: str | None = None
    display_name: str | None = None
    department: str | None = None
    title: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)
    roles: tuple[str, ...] = field(default_factory=tuple)
    key_id: str | None = None  # the issued API key used, if one was
    model_scope: tuple[str, ...] | None = None  # the key's own model allow-list; None = any
