"""Users the gateway knows locally: the owners of issued API keys.

A directory (LDAP, OIDC) stays the source of truth where one is configured; this table holds
what an administrator stated when issuing a key, so that a key's owner has a department and
groups on the embedded default too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from gateway.identity.principal import Principal
from gateway.storage import Database

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS users (
        user_id TEXT PRIMARY KEY,
        email TEXT,
        display_name TEXT,
        department TEXT,
        title TEXT,
        groups_json TEXT NOT NULL DEFAULT '[]',
        roles_json TEXT NOT NULL DEFAULT '[]',
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
]

_COLUMNS = "user_id, email, display_name, department, title, groups_json, roles_json"


class UserStore:
    """Local user records in the gateway's database."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        db.migrate(SCHEMA)

    def upsert(self, user: Principal) -> None:
        """Create the user, or replace the attributes of an existing one."""
        now = self._clock()
        self._db.execute(
            f"""INSERT INTO users ({_COLUMNS}, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (user_id) DO UPDATE SET
                    email = excluded.email, display_name = excluded.display_name,
                    department = excluded.department, title = excluded.title,
                    groups_json = excluded.groups_json, roles_json = excluded.roles_json,
                    updated_at = excluded.updated_at""",
            (
                user.user_id,
                user.email,
                user.display_name,
                user.department,
                user.title,
                json.dumps(list(user.groups)),
                json.dumps(list(user.roles)),
                now,
                now,
            ),
        )

    def get(self, user_id: str, *, auth_method: str = "api_key") -> Principal | None:
        """The user as a Principal authenticated by `auth_method`, or None."""
        row = self._db.fetchone(f"SELECT {_COLUMNS} FROM users WHERE user_id = ?", (user_id,))
        return None if row is None else _principal(row, auth_method)

    def list(self) -> list[Principal]:
        """Every local user, by id."""
        rows = self._db.fetchall(f"SELECT {_COLUMNS} FROM users ORDER BY user_id")
        return [_principal(row, "local") for row in rows]


def _principal(row: tuple[object, ...], auth_method: str) -> Principal:
    user_id, email, display_name, department, title, groups, roles = row
    return Principal(
        user_id=str(user_id),
        auth_method=auth_method,
        email=_text(email),
        display_name=_text(display_name),
        department=_text(department),
        title=_text(title),
        groups=tuple(json.loads(str(groups))),
        roles=tuple(json.loads(str(roles))),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)
