"""The background sender behind both sinks: batches, priorities and what happens when it cannot keep up."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from core.tracking.background import BackgroundSender


def test_items_arrive_in_order_in_few_batches():
    batches = []
    sender = BackgroundSender(batches.append, name="test", min_interval=0.2)
    for value in range(100):
        sender.put(value)
    sender.close()
    assert [v for batch in batches for v in batch] == list(range(100))
    assert len(batches) <= 2


def test_a_durable_sender_waits_for_room_instead_of_dropping():
    sent = []

    def slow_send(batch):
        time.sleep(0.05)
        sent.extend(batch)

    sender = BackgroundSender(slow_send, name="test", max_items=5, drop_when_full=False)
    for value in range(40):  # far faster than the sender drains a queue of 5
        sender.put(value)
    sender.close()
    assert sent == list(range(40)) and sender.dropped == 0


def test_a_durable_sender_whose_send_fails_does_not_block_training():
    def failing_send(batch):
        raise ConnectionError("store went away")

    sender = BackgroundSender(failing_send, name="test", max_items=2, drop_when_full=False)
    started = time.monotonic()
    for value in range(20):
        sender.put(value)
    sender.close()
    assert time.monotonic() - started < 5 and sender.dropped > 0 and sender.failed is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are per thread on Linux only")
def test_the_sender_thread_runs_at_the_lowest_priority():
    seen = {}

    def send(batch):
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    sender = BackgroundSender(send, name="test")
    sender.put(1)
    sender.close()
    assert seen["nice"] == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 19  # training keeps its priority
