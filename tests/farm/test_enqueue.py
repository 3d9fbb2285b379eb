"""Enqueueing at scale (issue 13, item C): render task messages built directly and pushed in
Redis pipelines must be the messages Celery's ``send_task`` pushes, and ``submit`` streams a
sweep's batches from the database to the broker."""

from __future__ import annotations

import json

import redis

from sdfarm.broker.app import RENDER_TASK, celery_priority, make_app, render_queue
from sdfarm.broker.queue import _job_ids_of, enqueue, job_ids_in_queue
from sdfarm.db.batches import QueuedBatch, queued_batches
from sdfarm.db.engine import session_factory
from sdfarm.usecases.farm import submit
from sdfarm.usecases.render import load_plan
from tests.conftest import write_job

#: What differs between two sends of one task: fresh ids, and who sent it.
VARYING = {("headers", "id"), ("headers", "root_id"), ("headers", "origin"),
           ("properties", "correlation_id"), ("properties", "delivery_tag"),
           ("properties", "reply_to")}


def _raw_messages(url: str) -> dict[str, list[bytes]]:
    client = redis.Redis.from_url(url)
    return {key.decode(): client.lrange(key, 0, -1) for key in client.keys("sdfarm*")
            if client.type(key) == b"list"}


def _fixed(raw: bytes) -> dict:
    message = json.loads(raw)
    for part, name in VARYING:
        assert message[part].pop(name)  # present, and set
    return message


def test_a_built_message_is_what_send_task_pushes_but_for_its_ids(settings, broker_url):
    settings = settings.with_(broker_url=broker_url)
    app = make_app(settings)
    ids = [7, 8, 9]
    with app.connection_for_write() as conn:
        queue = render_queue(settings)
        queue(conn.default_channel).declare()
        app.send_task(RENDER_TASK, args=[ids], queue=queue, priority=celery_priority(3))
    [(key, [theirs])] = _raw_messages(broker_url).items()
    redis.Redis.from_url(broker_url).delete(key)

    assert enqueue(settings, [QueuedBatch(1, 3, tuple(ids), False)], app=app) == 1
    [(our_key, [ours])] = _raw_messages(broker_url).items()
    assert our_key == key  # the same priority list
    assert _fixed(ours) == _fixed(theirs)
    assert _job_ids_of(ours) == ids


def test_kombu_reads_a_built_message_back_as_the_render_task(settings, broker_url):
    settings = settings.with_(broker_url=broker_url)
    app = make_app(settings)
    enqueue(settings, [QueuedBatch(1, 0, (4, 5), False)], app=app)
    with app.connection_for_read() as conn:
        message = conn.default_channel.basic_get(settings.queue, no_ack=True)
    assert message.headers["task"] == RENDER_TASK
    assert message.decode()[0] == [[4, 5]]


def test_enqueue_sends_every_batch_of_a_stream_in_pipelines(settings, broker_url, monkeypatch):
    import sdfarm.broker.queue as queue_module

    monkeypatch.setattr(queue_module, "PUBLISH_CHUNK", 7)  # several pipelines, one partial
    settings = settings.with_(broker_url=broker_url)
    batches = (QueuedBatch(1, i % 3, (2 * i, 2 * i + 1), False) for i in range(50))
    assert enqueue(settings, batches) == 50
    app = make_app(settings)
    with app.connection_for_write() as conn:
        assert job_ids_in_queue(conn.default_channel, settings.queue) == set(range(100))


def test_submit_streams_the_sweep_from_the_database_to_the_broker(settings, broker_url, tmp_path):
    settings = settings.with_(broker_url=broker_url)
    body = ('model = "builtin:tiny"\nprompt = "a cat"\nseeds = "1-2500"\nbatch_size = 3\n'
            '[axes]\nx = { cfg = [4, 6, 8, 10] }\n')
    plan = load_plan(settings, write_job(tmp_path, body))
    done = submit(settings, plan)
    assert (done.images, done.queued, done.batches) == (10_000, 10_000, len(plan.batches))
    assert done.batches == 4 * 834  # each column of 2,500 cut by 3: 833 of 3 and one of 1
    with session_factory(settings.database_url)() as session:
        recorded = [b.job_ids for b in queued_batches(session, [done.sweep_id])]
    sent = [_job_ids_of(raw) for raws in _raw_messages(broker_url).values() for raw in raws]
    assert sorted(tuple(ids) for ids in sent) == sorted(recorded)
