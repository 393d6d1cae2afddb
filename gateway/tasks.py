"""Background tasks that a component starts and, on shutdown, stops."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancelled(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel `tasks` (None: none) and wait until each has ended; what they raised on the
    way out is dropped: the component is closing."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
