"""The broker side of the queue: send render tasks by *name* (nothing here imports the worker
code or torch), and ``recover``, which makes the broker agree with the database again after a
crash, a lost message or a flushed Redis.

The database is the queue's truth. A message only says "look at these job ids"; a worker that
gets ids it cannot claim (done, canceled, or held by a live worker) acknowledges the message
and moves on. So sending a batch twice is always safe, and ``recover`` errs on that side.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from celery import Celery

from sdfarm.broker.app import RENDER_TASK, celery_priority, make_app, render_queue
from sdfarm.broker.messages import MessageSender
from sdfarm.config import Settings
from sdfarm.db.batches import QueuedBatch, queued_batches
from sdfarm.db.engine import session_factory
from sdfarm.db.jobs import Requeued, requeue_expired, requeue_gone
from sdfarm.db.sweeps import LeftByLocalRenders, settle_local_renders
from sdfarm.db.waiting import settle_waiting
from sdfarm.db.workers import gone_holders
from sdfarm.errors import BrokerUnavailable
from sdfarm.files import place_image
from sdfarm.processes import pid_alive

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

#: Messages per Redis round trip when enqueueing (one pipeline of LPUSHes).
PUBLISH_CHUNK = 1_000


def enqueue(settings: Settings, batches: Iterable[QueuedBatch], *, app: Celery | None = None) -> int:
    """Send one render task per batch, at its sweep's priority; returns how many were sent.

    ``batches`` is read once, as it comes (``submit`` streams a million-image sweep from the
    database): each chunk of :data:`PUBLISH_CHUNK` goes to Redis as one pipeline of the very
    messages Celery's ``send_task`` would push (``sdfarm.broker.messages``), at some 50 times
    its speed.
    """
    it = iter(batches)
    first = next(it, None)
    if first is None:
        return 0
    app = app or make_app(settings)
    queue = render_queue(settings)
    sender = MessageSender(app, settings.queue)
    sent = 0
    with broker_errors(settings), app.connection_for_write() as conn:
        channel = conn.default_channel
        # Declared on every call, not once per process: a FLUSHALL also drops kombu's routing
        # table, and a cached "already declared" would then lose every later message.
        queue(channel).declare()
        with channel.conn_or_acquire() as client:
            for chunk in _chunks(itertools.chain([first], it), PUBLISH_CHUNK):
                pipe = client.pipeline(transaction=False)
                for batch in chunk:
                    level = celery_priority(batch.priority)
                    pipe.lpush(channel._q_for_pri(settings.queue, level),
                               sender.message(batch.job_ids, level))
                pipe.execute()
                sent += len(chunk)
    return sent


def _chunks(items: Iterable[QueuedBatch], size: int) -> Iterator[list[QueuedBatch]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


@dataclass
class Recovery:
    #: Expired leases (dead or hung workers) put back in the queue.
    requeued: list[int] = field(default_factory=list)
    #: Jobs whose workers died SDFARM_MAX_ATTEMPTS times on them: failed with the reason.
    failed: list[int] = field(default_factory=list)
    #: Running jobs of workers found gone (``sdfarm.db.workers.gone_holders``), put back
    #: without waiting for their lease.
    released: list[int] = field(default_factory=list)
    #: Queued jobs the broker already held.
    held: int = 0
    #: Queued jobs sent again, and in how many tasks.
    enqueued_jobs: int = 0
    enqueued_batches: int = 0
    #: Unfinished jobs of local renders (``sdfarm render``), never sent to the farm.
    local: LeftByLocalRenders = field(default_factory=lambda: LeftByLocalRenders({}, {}))


def recover(settings: Settings, app: Celery | None = None, *, thorough: bool = True,
            watched_for: float | None = None) -> Recovery:
    """Make the broker hold every job the database says is queued, after requeueing the jobs
    whose lease expired or whose worker is gone (or failing those out of attempts).
    ``watched_for`` is as in :func:`sdfarm.db.workers.gone_holders` (None: `sdfarm recover`,
    whose user asks for it).

    ``thorough`` reads the broker's queue to find which queued jobs it holds and sends the
    rest (``sdfarm recover``, a worker's start). Otherwise (a worker's periodic sweep) only an
    empty queue is taken as "the broker lost them": reading a long queue every few seconds on
    every worker would cost more than the rare loss it finds.
    """
    app = app or make_app(settings)
    factory = session_factory(settings.database_url)
    with factory.begin() as session:
        expired = requeue_expired(session, settings.max_attempts)
        gone = _requeue_gone(session, settings, watched_for)
        local = settle_local_renders(session, socket.gethostname(), pid_alive)
        # Waiting jobs whose target ended without the writer settling them (it failed, was
        # canceled, or its worker died after recording it).
        waited = settle_waiting(session, place_image)
    report = Recovery(requeued=sorted(expired.requeued),
                      failed=sorted(expired.failed + gone.failed), released=gone.requeued,
                      local=local)
    with factory() as session:
        # A local render's jobs are its own: sent to the broker, a worker would render them
        # beside it (or, after a kill, behind the user's back).
        batches = queued_batches(session, executor="farm")
    if not batches and not thorough:
        return report
    # A thorough recovery asks the broker even with nothing to send: `sdfarm recover` must
    # not report a broker it never reached.
    just_requeued = set(expired.requeued).union(gone.requeued, *waited.requeued.values())
    with broker_errors(settings), app.connection_for_write() as conn:
        channel = conn.default_channel
        if thorough:
            held = job_ids_in_queue(channel, settings.queue)
        elif queue_length(channel, settings.queue) == 0:
            held = set()
        else:
            held = {i for b in batches for i in b.job_ids} - just_requeued
    missing = [b.only(lambda i: i not in held) for b in batches]
    to_send = [b for b in missing if b.job_ids]
    report.held = sum(len(b.job_ids) for b in batches) - sum(len(b.job_ids) for b in to_send)
    report.enqueued_batches = enqueue(settings, to_send, app=app)
    report.enqueued_jobs = sum(len(b.job_ids) for b in to_send)
    return report


def _requeue_gone(session: Session, settings: Settings, watched_for: float | None) -> Requeued:
    holders = gone_holders(session, host=socket.gethostname(),
                           heartbeat_seconds=settings.heartbeat_seconds, alive=pid_alive,
                           watched_for=watched_for)
    return requeue_gone(session, holders, settings.max_attempts) if holders else Requeued([], [])


class LostWorkers:
    """Called by each worker's heartbeat: the jobs of workers found gone go back to the queue
    and to the broker now, within a few heartbeats of a death instead of a whole lease.

    Every worker looks (a cheap read when nothing is lost); the conditional UPDATEs let one
    of them requeue each job, and that one sends it. What the broker did not take is sent
    again at the next call."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings, self.app = settings, app
        self._factory = session_factory(settings.database_url)
        self._unsent: set[int] = set()

    def __call__(self, watched_for: float) -> Requeued:
        with self._factory() as session:
            holders = gone_holders(session, host=socket.gethostname(),
                                   heartbeat_seconds=self.settings.heartbeat_seconds,
                                   alive=pid_alive, watched_for=watched_for)
        result = Requeued([], [])
        if holders:
            with self._factory.begin() as session:
                result = requeue_gone(session, holders, self.settings.max_attempts)
            if result.requeued or result.failed:
                log.warning("workers %s are gone: requeued their jobs %s, failed %s (out of "
                            "attempts)", ", ".join(h.name for h in holders), result.requeued,
                            result.failed)
        self._unsent.update(result.requeued)
        if self._unsent:
            with self._factory() as session:
                batches = queued_batches(session, executor="farm", job_ids=sorted(self._unsent))
            enqueue(self.settings, batches, app=self.app)
            self._unsent.clear()
        return result


@contextlib.contextmanager
def broker_errors(settings: Settings) -> Iterator[None]:
    """Broker connection failures as one actionable line."""
    from kombu.exceptions import OperationalError
    from kombu.utils.url import maybe_sanitize_url
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError

    try:
        yield
    except (OperationalError, RedisConnectionError, TimeoutError, ConnectionError) as exc:
        raise BrokerUnavailable(
            f"cannot reach the broker SDFARM_BROKER_URL={maybe_sanitize_url(settings.broker_url)}: "
            f"{str(exc).rstrip('.')}; once it is up, `sdfarm recover` queues what the database "
            "holds") from None


def _priority_keys(channel, queue: str) -> list[str]:
    return sorted({channel._q_for_pri(queue, p) for p in channel.priority_steps})


def queue_length(channel, queue: str) -> int:
    """Messages waiting in the queue, over all priority levels."""
    with channel.conn_or_acquire() as client:
        pipe = client.pipeline()
        for key in _priority_keys(channel, queue):
            pipe.llen(key)
        return sum(n for n in pipe.execute() if isinstance(n, int))


def job_ids_in_queue(channel, queue: str) -> set[int]:
    """Job ids of every render task waiting in the queue (not those being run: their jobs are
    running in the database, and a dead worker's unacknowledged message is exactly what
    ``recover`` must not count on)."""
    held: set[int] = set()
    with channel.conn_or_acquire() as client:
        for key in _priority_keys(channel, queue):
            for raw in client.lrange(key, 0, -1):
                held.update(_job_ids_of(raw))
    return held


def _job_ids_of(raw: bytes | str) -> list[int]:
    """The job ids a raw kombu message for our task carries; [] for anything else."""
    try:
        message = json.loads(raw)
        if message.get("headers", {}).get("task") != RENDER_TASK:
            return []
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return [int(i) for i in args[0]]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return []


def try_lock(settings: Settings, app: Celery, name: str, seconds: float) -> bool:
    """A farm-wide lock in Redis for ``seconds``: of many workers due for a periodic recovery
    sweep, one does it."""
    with broker_errors(settings), app.connection_for_write() as conn:
        with conn.default_channel.conn_or_acquire() as client:
            return bool(client.set(f"sdfarm:{settings.queue}:{name}", "1", nx=True,
                                   px=max(1, int(seconds * 1000))))
