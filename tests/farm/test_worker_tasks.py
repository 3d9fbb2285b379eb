"""The worker's render task: what a message may carry."""

from __future__ import annotations

import pytest

from sdfarm.worker.tasks import BadMessage, decode_job_ids


def test_a_message_carries_positive_integer_job_ids_only():
    assert decode_job_ids([3, 1, 2]) == [3, 1, 2]
    for bad in ([], "1,2", [1, "2"], [True], [0], None, {"ids": [1]}):
        with pytest.raises(BadMessage):
            decode_job_ids(bad)
