"""The farm's Celery app (sdfarm.broker.app): the settings the farm depends on (research
notes §6), and the import boundary: the code that sends tasks never imports torch or the
worker."""

from __future__ import annotations

import subprocess
import sys

from sdfarm.broker.app import RENDER_TASK, celery_priority, make_app
from sdfarm.config import Settings


def test_the_app_speaks_json_only_acks_late_and_reserves_one_task():
    conf = make_app(Settings()).conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_concurrency == 1
    assert conf.task_ignore_result
    # the solo pool would sit out a soft shutdown inside the signal handler, batch frozen
    assert conf.worker_soft_shutdown_timeout == 0


def test_one_visibility_timeout_everywhere_and_redis_priorities():
    conf = make_app(Settings(visibility_timeout=7200)).conf
    transport = conf.broker_transport_options
    assert transport["visibility_timeout"] == 7200
    assert conf.result_backend_transport_options["visibility_timeout"] == 7200
    assert conf.visibility_timeout == 7200
    assert transport["queue_order_strategy"] == "priority"
    assert transport["priority_steps"] == list(range(10))
    # kombu's scan for abandoned messages runs every tick, at most once a minute
    assert transport["unacked_restore_throttle"] == 1 and transport["unacked_restore_interval"] == 60


def test_a_higher_sdfarm_priority_is_a_lower_redis_level():
    # Redis priorities are emulated with 0 first; sdfarm's run higher first.
    assert [celery_priority(p) for p in (0, 5, 9)] == [9, 4, 0]
    assert celery_priority(-3) == 9 and celery_priority(42) == 0


def test_sending_tasks_imports_neither_torch_nor_the_worker():
    code = ("import sys\n"
            "import sdfarm.broker.queue, sdfarm.cli.farm, sdfarm.cli.main\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'sdfarm.worker.batch', "
            "'sdfarm.worker.tasks') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert make_app(Settings()).tasks.get(RENDER_TASK) is None  # sent by name, never imported
