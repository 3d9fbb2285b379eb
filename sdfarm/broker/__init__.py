"""The farm's broker contract (Celery app, task name, queue, priorities) and the operations
that keep the broker in agreement with the database (enqueue, recover). Imports celery and
kombu, never torch: submitters and workers both use it."""
