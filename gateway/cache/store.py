"""Cache entries kept in least-recently-used order, with expiry and SQLite snapshots."""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Entry:
    """One cached answer and the request it answers."""

    entry_id: int
    scope: str
    text: str
    response: str
    exact_key: str
    normalised_key: str
    created_at: float
    last_used_at: float
    model: str = ""
    context: str = ""  # earlier user turns of a conversation, most recent first
    exact_only: bool = False
    # Half-precision copies: the last turn's and the context's vectors (conversations only:
    # their similarity is the lower of the two), and the answer's (compared on inserts).
    turn_vector: np.ndarray | None = None
    context_vector: np.ndarray | None = None
    answer_vector: np.ndarray | None = None


_SCHEMA = """
CREATE TABLE entries (
    entry_id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    text TEXT NOT NULL,
    response TEXT NOT NULL,
    exact_key TEXT NOT NULL,
    normalised_key TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL NOT NULL,
    lru_rank INTEGER NOT NULL,
    model TEXT NOT NULL,
    context TEXT NOT NULL,
    exact_only INTEGER NOT NULL,
    turn_vector BLOB,
    context_vector BLOB,
    answer_vector BLOB
)
"""
_COLUMNS = (
    "entry_id, scope, text, response, exact_key, normalised_key, created_at, last_used_at,"
    " model, context, exact_only, turn_vector, context_vector, answer_vector"
)


class EntryStore:
    """Entries by id plus the exact and normalised lookup maps, in LRU order."""

    def __init__(self) -> None:
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._by_exact: dict[str, int] = {}
        self._by_normalised: dict[str, int] = {}
        # Insertion order is creation order (every TTL is the same), so expiry only ever looks
        # at the front of this map instead of scanning every entry on each lookup.
        self._by_age: OrderedDict[int, float] = OrderedDict()
        self.next_id = 1

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def get(self, entry_id: int) -> Entry | None:
        """The entry with this id, if stored."""
        return self._entries.get(entry_id)

    def by_exact(self, key: str) -> Entry | None:
        """The entry stored under this exact key, if any."""
        entry_id = self._by_exact.get(key)
        return None if entry_id is None else self._entries.get(entry_id)

    def by_normalised(self, key: str) -> Entry | None:
        """The entry stored under this normalised key, if any."""
        entry_id = self._by_normalised.get(key)
        return None if entry_id is None else self._entries.get(entry_id)

    def add(self, entry: Entry) -> None:
        """Store `entry` as the most recently used one."""
        self._entries[entry.entry_id] = entry
        self._by_exact[entry.exact_key] = entry.entry_id
        # The newest answer wins the normalised key, as it would the exact key.
        self._by_normalised[entry.normalised_key] = entry.entry_id
        self._by_age[entry.entry_id] = entry.created_at
        self.next_id = max(self.next_id, entry.entry_id + 1)

    def touch(self, entry: Entry, now: float) -> None:
        """Mark `entry` as just used."""
        entry.last_used_at = now
        self._entries.move_to_end(entry.entry_id)

    def remove(self, entry_id: int) -> Entry | None:
        """Drop an entry and any keys that still point at it."""
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return None
        del self._by_age[entry_id]
        if self._by_exact.get(entry.exact_key) == entry_id:
            del self._by_exact[entry.exact_key]
        if self._by_normalised.get(entry.normalised_key) == entry_id:
            del self._by_normalised[entry.normalised_key]
        return entry

    def least_recently_used(self) -> Entry | None:
        """The entry that has gone unused the longest."""
        return next(iter(self._entries.values()), None)

    def expired(self, before: float) -> list[Entry]:
        """Entries created before `before`, oldest first."""
        found = []
        for entry_id, created_at in self._by_age.items():
            if created_at >= before:
                break
            found.append(self._entries[entry_id])
        return found

    def save(self, path: str | Path) -> None:
        """Snapshot every entry, LRU order included, into a fresh SQLite file at `path`."""
        target = Path(path)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.unlink(missing_ok=True)
        with sqlite3.connect(tmp) as db:
            db.execute(_SCHEMA)
            db.executemany(
                f"INSERT INTO entries ({_COLUMNS}, lru_rank)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        e.entry_id,
                        e.scope,
                        e.text,
                        e.response,
                        e.exact_key,
                        e.normalised_key,
                        e.created_at,
                        e.last_used_at,
                        e.model,
                        e.context,
                        int(e.exact_only),
                        _blob(e.turn_vector),
                        _blob(e.context_vector),
                        _blob(e.answer_vector),
                        rank,
                    )
                    for rank, e in enumerate(self._entries.values())
                ),
            )
        # Atomic swap so that a crash mid-save leaves the previous snapshot intact.
        tmp.replace(target)

    def load(self, path: str | Path) -> None:
        """Replace the content with the snapshot at `path`."""
        self._entries.clear()
        self._by_exact.clear()
        self._by_normalised.clear()
        self._by_age.clear()
        db = sqlite3.connect(Path(path))
        try:
            rows = db.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY lru_rank").fetchall()
        finally:
            db.close()
        entries = [
            Entry(
                entry_id=row[0],
                scope=row[1],
                text=row[2],
                response=row[3],
                exact_key=row[4],
                normalised_key=row[5],
                created_at=row[6],
                last_used_at=row[7],
                model=row[8],
                context=row[9],
                exact_only=bool(row[10]),
                turn_vector=_vector(row[11]),
                context_vector=_vector(row[12]),
                answer_vector=_vector(row[13]),
            )
            for row in rows
        ]
        for entry in sorted(entries, key=lambda e: e.created_at):
            self._by_age[entry.entry_id] = entry.created_at
        for entry in entries:
            self.add(entry)


def _blob(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.ascontiguousarray(vector, dtype=np.float16).tobytes()


def _vector(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(bytes(blob), dtype=np.float16)
