"""AuditWriter: records leave the request path through a bounded queue and reach the database
in batches, from one background thread.

What a crash can lose: the records enqueued but not yet committed. That is at most `max_queue`
records; under steady traffic it is about `flush_interval_s` of requests plus the batch being
committed at that moment. `aclose()` (a clean shutdown) and `flush()` lose nothing: they return
once every record enqueued before them is committed. Committed records are as durable as the
database makes them (SQLite in WAL with synchronous=NORMAL survives a process crash; a power
cut may take back its last commits).

Nothing is dropped on purpose: when the queue is full, `record()` waits for space
(back-pressure onto the requests), and a batch the database refuses is retried, with growing
delays, until it goes in. A caller cancelled while it waits for space (a client that went away)
still has its record written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from gateway.audit.config import AuditConfig
from gateway.audit.content import ContentPolicy, Redactor
from gateway.audit.record import AuditRecord
from gateway.audit.store import AuditStore
from gateway.observability.metrics import MetricFactory, Recorder, instruments
from gateway.storage import Database

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

log = logging.getLogger(__name__)


class AuditWriterClosed(RuntimeError):
    """`record()` after `aclose()`."""


class AuditWriter:
    """Batches records into `store` off the request path; see the module docstring.

    Use it from one event loop. `record()` is the request path's only call; it returns as soon
    as the record is queued.
    """

    def __init__(
        self,
        store: AuditStore,
        *,
        max_queue: int = 10000,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        content: ContentPolicy | None = None,
        retry_delay_s: float = 0.1,
        max_retry_delay_s: float = 5.0,
        metrics: MetricFactory | None = None,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or flush_interval_s < 0:
            raise ValueError("max_queue and batch_size must be >= 1, flush_interval_s >= 0")
        self._store = store
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._content = content or ContentPolicy()
        self._retry_delay_s = retry_delay_s
        self._max_retry_delay_s = max_retry_delay_s
        self._metrics = instruments(
            metrics or Recorder(),
            ["raygate_audit_queue_depth", "raygate_audit_write_lag_ms",
             "raygate_audit_write_failures"],
        )  # fmt: skip
        # Counts records queued or being committed, so a crash loses at most `max_queue`.
        self._space = asyncio.Semaphore(max_queue)
        self._queue: deque[tuple[float, AuditRecord]] = deque()  # (loop time queued, record)
        self._wake = asyncio.Event()
        self._enqueued = 0
        self._committed = 0
        self._flush_through = 0
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._waiting_for_space: set[asyncio.Task[None]] = set()
        self._closing = False  # aclose() was called: no lingering, stop once drained
        self._stopped = False  # the flusher is gone: record() refuses
        self._closed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: one database connection, and batches commit in the order they were taken.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")

    @classmethod
    def from_config(
        cls,
        store: AuditStore,
        config: AuditConfig,
        *,
        redactor: Redactor | None = None,
        metrics: MetricFactory | None = None,
    ) -> AuditWriter:
        """A writer with the queue and content settings of `config`; `metrics` makes its
        queue depth, write lag and failure instruments."""
        content = ContentPolicy(prompt=config.prompt, response=config.response)
        if redactor is not None:
            content = ContentPolicy(config.prompt, config.response, redactor)
        return cls(
            store,
            max_queue=config.max_queue,
            batch_size=config.batch_size,
            flush_interval_s=config.flush_interval_s,
            content=content,
            metrics=metrics,
        )

    @classmethod
    def for_gateway(
        cls,
        db: Database,
        config: GatewayConfig,
        *,
        redactor: Redactor | None = None,
        metrics: MetricFactory | None = None,
    ) -> AuditWriter:
        """The gateway's writer: the store with the config's chain and data keys
        (`AuditStore.for_gateway`), the queue and content settings of `config.audit`."""
        store = AuditStore.for_gateway(db, config)
        return cls.from_config(store, config.audit, redactor=redactor, metrics=metrics)

    @property
    def store(self) -> AuditStore:
        """Where the records go."""
        return self._store

    @property
    def pending(self) -> int:
        """Records queued or being committed."""
        return self._enqueued - self._committed

    async def record(self, record: AuditRecord) -> None:
        """Queue `record` for the chain; waits only while the queue is full.

        Requests still finishing while `aclose()` runs are recorded too; only once the writer
        has stopped does this raise `AuditWriterClosed`.
        """
        self._raise_if_stopped()
        if not self._space.locked():
            await self._space.acquire()  # free space: returns without suspending
            self._enqueue(record)
            return
        waiter = asyncio.ensure_future(self._enqueue_when_space(record))
        self._waiting_for_space.add(waiter)
        waiter.add_done_callback(self._waiter_done)
        self._wake.set()  # a full queue is flushed at once, not after the interval
        await asyncio.shield(waiter)

    async def _enqueue_when_space(self, record: AuditRecord) -> None:
        await self._space.acquire()
        self._raise_if_stopped()
        self._enqueue(record)

    def _waiter_done(self, waiter: asyncio.Task[None]) -> None:
        self._waiting_for_space.discard(waiter)
        self._wake.set()  # a closing writer waits for these before it stops

    def _enqueue(self, record: AuditRecord) -> None:
        loop = asyncio.get_running_loop()
        self._queue.append((loop.time(), record))
        self._enqueued += 1
        self._metrics["raygate_audit_queue_depth"].set(self.pending)
        if self._task is None:
            self._task = loop.create_task(self._run(), name="audit-writer")
        if len(self._queue) == 1 or len(self._queue) >= self._batch_size or self._space.locked():
            self._wake.set()

    async def flush(self) -> None:
        """Return once every record queued before this call is committed."""
        self._raise_if_stopped()
        target = self._enqueued
        if self._committed >= target:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((target, done))
        self._flush_through = max(self._flush_through, target)
        self._wake.set()
        await done

    async def aclose(self) -> None:
        """Commit everything queued (and every caller still waiting for space), then stop."""
        if self._closed is None:
            self._closing = True
            self._closed = asyncio.ensure_future(self._close())
        # Shielded: a shutdown that is itself cancelled still finishes writing the queue.
        await asyncio.shield(self._closed)

    async def _close(self) -> None:
        if self._task is None:
            self._stopped = True  # nothing was ever queued, and from now on nothing will be
        else:
            self._wake.set()
            await self._task  # it stops once the queue is empty and nobody waits for space
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._store.db.close)
        await asyncio.to_thread(self._executor.shutdown)

    def _raise_if_stopped(self) -> None:
        if self._stopped:
            raise AuditWriterClosed("the audit writer is closed")
        if self._task is not None and self._task.done():
            self._task.result()  # re-raises what stopped the writer: a bug, never a DB error

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue:
                    if self._closing and not self._waiting_for_space:
                        # In the same step as the check: no record can slip in unwritten.
                        self._stopped = True
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                delay = self._queue[0][0] + self._interval - loop.time()
                if delay > 0 and self._may_linger():
                    # Let a batch fill up; a record, a flush or a full queue ends the wait.
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    continue
                count = min(self._batch_size, len(self._queue))
                queued = [self._queue.popleft() for _ in range(count)]
                batch = [record for _, record in queued]
                await loop.run_in_executor(self._executor, self._commit, batch)
                self._committed += count
                self._observe_commit(loop.time(), [at for at, _ in queued])
                for _ in range(count):
                    self._space.release()
                self._release_flush_waiters()
        finally:
            self._fail_flush_waiters()

    def _observe_commit(self, now: float, queued_at: list[float]) -> None:
        lag = self._metrics["raygate_audit_write_lag_ms"]
        for at in queued_at:
            lag.observe((now - at) * 1000)
        self._metrics["raygate_audit_queue_depth"].set(self.pending)

    def _may_linger(self) -> bool:
        return (
            len(self._queue) < self._batch_size
            and not self._closing
            and self._flush_through <= self._committed
            and not self._space.locked()
        )

    def _release_flush_waiters(self) -> None:
        still = []
        for target, done in self._flush_waiters:
            if target <= self._committed:
                if not done.done():
                    done.set_result(None)
            else:
                still.append((target, done))
        self._flush_waiters = still

    def _fail_flush_waiters(self) -> None:
        for _, done in self._flush_waiters:
            if not done.done():
                done.set_exception(RuntimeError("the audit writer stopped"))
        self._flush_waiters = []

    def _commit(self, batch: list[AuditRecord]) -> None:
        """Treat the content and append `batch`, retrying until the database takes it."""
        treated = [self._treat(r) for r in batch]
        delay = self._retry_delay_s
        retried = False
        while True:
            try:
                self._store.append(treated, skip_existing=retried)
                return
            except Exception:
                # Dropping the batch would break the trail's promise; keep it and say so loudly.
                log.exception("audit: committing %d records failed; retrying", len(treated))
                self._metrics["raygate_audit_write_failures"].inc()
            retried = True
            time.sleep(delay)  # a backoff between attempts, not a synchronisation
            delay = min(delay * 2, self._max_retry_delay_s)

    def _treat(self, record: AuditRecord) -> AuditRecord:
        try:
            return self._content.apply(record)
        except Exception:
            # A failing redactor must not lose the record: keep only hashes of its texts.
            log.exception("audit: redacting record %s failed; storing hashes", record.id)
            return ContentPolicy(prompt="hash", response="hash").apply(record)
