"""The policy's data files (patterns, attack corpus, topics): a file of the user's, or the one
packaged with `gateway.policy`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: str | Path | None, packaged: str) -> Any:
    """The parsed YAML at `path`, else the packaged file named `packaged`."""
    if path is None:
        raw = resources.files("gateway.policy").joinpath(packaged).read_text("utf-8")
    else:
        raw = Path(path).read_text(encoding="utf-8")
    return yaml.safe_load(raw)
