"""OAuth access tokens the simulator issued (Google's and Entra ID's token endpoints), so
that the cloud routes can check the bearer tokens they are sent."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Literal

Audience = Literal["google", "azure"]


class TokenStore:
    """Issued tokens with their audience and expiry; `revoke_all` forgets every one (to make
    a client refresh early)."""

    def __init__(self, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._tokens: dict[str, tuple[Audience, float]] = {}
        self.issued: Counter[str] = Counter()

    def issue(self, audience: Audience) -> str:
        """A new token for `audience`, valid for `ttl_s` seconds."""
        token = f"sim-{audience}-{secrets.token_urlsafe(18)}"
        self._tokens[token] = (audience, self._clock() + self.ttl_s)
        self.issued[audience] += 1
        return token

    def valid(self, token: str, audience: Audience) -> bool:
        """Whether `token` was issued for `audience` and has not expired or been revoked."""
        entry = self._tokens.get(token)
        return entry is not None and entry[0] == audience and self._clock() < entry[1]

    def revoke_all(self) -> None:
        """Forget every token issued so far."""
        self._tokens.clear()
