"""The farm's Celery app, built from Settings. Imports celery and kombu only, never torch: the
scheduler and the CLI build it to send tasks by name.

Every setting here exists because of a known Celery-on-Redis pitfall (README, "The farm";
research notes §6). The database, not the broker, decides who renders what: a message is only
"please look at these job ids", and handling it twice is harmless.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from sdfarm.config import Settings

#: The one task, sent by name so that senders never import the worker code.
RENDER_TASK = "sdfarm.render_batch"

#: sdfarm priorities 0..9, higher first. Redis has no priorities: kombu emulates them with
#: one list per level and BRPOPs them in order; on Redis 0 is the *highest* level.
PRIORITY_LEVELS = 10

#: Most seconds between kombu's scans for unacknowledged messages older than the visibility
#: timeout (the scan runs on every tick: throttle 1). kombu's default is 10 s x 10 = 100 s.
#: With the default 12 h visibility timeout a scan finds nothing for hours, so once a minute
#: is plenty; a dead worker's jobs come back through their DB lease and ``recover`` instead,
#: within SDFARM_LEASE_SECONDS + SDFARM_RECOVER_INTERVAL. A short visibility timeout scans
#: at a quarter of it, so that kombu's redelivery happens when the timeout says.
UNACKED_RESTORE_INTERVAL = 60.0
UNACKED_RESTORE_THROTTLE = 1

#: Celery's "soft shutdown" lets running tasks go on for a while before a cold shutdown
#: cancels them. Our workers run the task in the main thread (solo pool), where Celery waits
#: *inside the signal handler*, so the batch is frozen for the whole wait: 0 skips the
#: pointless pause. SIGTERM is the graceful stop (the batch finishes); a cold shutdown
#: (SIGQUIT, a second Ctrl+C) stops the batch at once and its jobs go straight back to the
#: queue (``sdfarm.worker.solo.SoloPool``).
SOFT_SHUTDOWN_SECONDS = 0.0


def celery_priority(priority: int) -> int:
    """The Redis priority level of an sdfarm priority (clamped to 0..9, higher first)."""
    return PRIORITY_LEVELS - 1 - max(0, min(PRIORITY_LEVELS - 1, priority))


def render_queue(settings: Settings) -> Queue:
    return Queue(settings.queue, Exchange(settings.queue, type="direct"), routing_key=settings.queue)


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    return {
        # Far above any batch: below it, a healthy long batch is handed to a second worker
        # (harmless thanks to the lease, but a waste of a GPU).
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": min(UNACKED_RESTORE_INTERVAL,
                                        max(1.0, settings.visibility_timeout / 4)),
        "unacked_restore_throttle": UNACKED_RESTORE_THROTTLE,
        "queue_order_strategy": "priority",
        "priority_steps": list(range(PRIORITY_LEVELS)),
        "sep": ":",
        # Without a socket timeout a publish to a vanished Redis waits forever.
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        "health_check_interval": 25,
    }


def make_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``. Workers add the task with ``register_tasks``."""
    app = Celery("sdfarm", broker=settings.broker_url, set_as_current=False)
    transport = broker_transport_options(settings)
    app.conf.update(
        # JSON only: a pickled message can run code in the worker that unpickles it.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        event_serializer="json",
        # Results live in the database; Celery keeps none (and so needs no result backend).
        task_ignore_result=True,
        result_backend=None,
        # Ack after the batch, reserve nothing beyond it: a busy GPU never sits on a second
        # message that an idle GPU could take.
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        # A task whose process died goes back to the queue; the DB attempt count (not Celery)
        # stops a poison job from looping (SDFARM_MAX_ATTEMPTS).
        task_reject_on_worker_lost=True,
        # A Python error inside the task is recorded on its jobs in the DB; ack it.
        task_acks_on_failure_or_timeout=True,
        broker_transport_options=transport,
        # The same timeout everywhere Celery reads one; on a shared Redis the shortest wins.
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        visibility_timeout=settings.visibility_timeout,
        worker_soft_shutdown_timeout=SOFT_SHUTDOWN_SECONDS,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_default_queue=settings.queue,
        task_queues=[render_queue(settings)],
        task_default_priority=celery_priority(0),
        # No task events unless asked: three Redis publishes per task, for nobody. Flower
        # switches them on in the workers it watches (its enable_events, on by default).
        worker_send_task_events=False,
        worker_disable_rate_limits=True,
    )
    return app
