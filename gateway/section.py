"""The base of every section of the configuration tree."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigSection(BaseModel):
    """A part of the configuration: an unknown key is refused, so a typo is an error that
    names the field, never a setting silently ignored."""

    model_config = ConfigDict(extra="forbid")
