"""Stand-ins for what a DeploymentHandle call returns, shared by the handle tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


class Items:
    """A streaming handle call's result: fails before its first item with `failure`, if
    given, or yields `items` then fails with `cut`."""

    def __init__(self, items: list[Any], *, failure: BaseException | None = None,
                 cut: BaseException | None = None) -> None:  # fmt: skip
        self.items, self.failure, self.cut = items, failure, cut
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self.failure is not None:
            raise self.failure
        if self.items:
            return self.items.pop(0)
        if self.cut is not None:
            raise self.cut
        raise StopAsyncIteration

    def cancel(self) -> None:
        self.cancelled = True
