"""A process that races for a budget, for the multiprocess test (kept apart from the test
module so that each spawned process imports little)."""

from __future__ import annotations

import asyncio
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from gateway.accounting.budgets import BudgetLedger, QuotaExceeded
from gateway.accounting.config import BudgetsConfig
from gateway.identity.principal import Principal
from gateway.storage.database import Database


def reserve_in_turn(
    url: str, now: float, limit_usd: float, attempts: int, barrier: Barrier, results: Queue[int]
) -> None:
    """Try `attempts` reservations of $0.10 for alice once every process is ready; put how
    many were admitted on `results`."""

    async def run() -> int:
        config = BudgetsConfig.model_validate({"users": {"alice": {"usd_per_day": limit_usd}}})
        budgets = BudgetLedger(Database(url), config, clock=lambda: now)
        alice = Principal(user_id="alice", auth_method="test")
        await budgets.spend(alice)  # the schema exists before the race starts
        barrier.wait()
        admitted = 0
        for _ in range(attempts):
            try:
                await budgets.reserve(alice, 0.1)
                admitted += 1
            except QuotaExceeded:
                pass
        return admitted

    results.put(asyncio.run(run()))
