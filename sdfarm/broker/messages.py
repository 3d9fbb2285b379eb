"""Render task messages as Celery's ``send_task`` pushes them to Redis, built directly.

``send_task`` spends about half a millisecond per message on routing, signals, argument
reprs and kombu's publish path: 250,000 batches (a million images) took 109 s to enqueue. A
render task message is always the same shape: the task name, one argument (the job ids), no
options. So it is built here as the JSON kombu's Redis transport stores, and pushed in
pipelines (``sdfarm.broker.queue.enqueue``). ``tests/farm/test_enqueue.py`` compares it, field
by field, with the message ``send_task`` pushes, so a Celery or kombu upgrade that changes
the format fails there rather than in a worker.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence

from celery import Celery
from celery.utils.nodenames import anon_nodename

from sdfarm.broker.app import RENDER_TASK

#: Celery protocol 2's third body element: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class MessageSender:
    """Messages for one enqueue: what is the same for all of them is worked out once."""

    def __init__(self, app: Celery, queue: str) -> None:
        self.queue = queue
        self.origin = anon_nodename()
        self.reply_to = app.thread_oid

    def message(self, job_ids: Sequence[int], priority: int) -> str:
        """The Redis list entry of one render task for ``job_ids`` at Redis ``priority``."""
        task_id = str(uuid.uuid4())
        args = [list(job_ids)]
        body = json.dumps([args, {}, _EMBED]).encode()
        return json.dumps({
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py", "task": RENDER_TASK, "id": task_id, "shadow": None, "eta": None,
                "expires": None, "group": None, "group_index": None, "retries": 0,
                "timelimit": [None, None], "root_id": task_id, "parent_id": None,
                "argsrepr": repr(args), "kwargsrepr": "{}", "origin": self.origin,
                "ignore_result": None, "replaced_task_nesting": 0, "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": task_id, "reply_to": self.reply_to, "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": self.queue},
                "priority": priority, "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        })
