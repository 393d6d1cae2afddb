"""Persistent state: one data layer over SQLite and PostgreSQL."""

from gateway.storage.database import Database

__all__ = ["Database"]
