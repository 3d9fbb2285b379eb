"""``celery -A sdfarm.broker.flower flower``: the farm's Celery app for Flower.

Celery's ``-A`` wants a module-level app, so this entry point builds the Settings from the
environment on import (the one module that does): Flower then uses the farm's broker and
transport options (priority levels, key separator) to read the queues as the workers do.
"""

from __future__ import annotations

from sdfarm.broker.app import make_app
from sdfarm.config import Settings

app = make_app(Settings.from_env())
