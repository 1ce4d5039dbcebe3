"""The mailbox between the worker's main loop and the app's loop (worker/app/mailbox.py): one
wakeup per batch, held by the holder until it is about to wait, closures run in order."""

from __future__ import annotations

import os
import select
import threading
import time

from worker.app import mailbox
from worker.app.mailbox import Mailbox


def readable(box: Mailbox) -> bool:
    return bool(select.select([box.fd], [], [], 0)[0])


def pending_bytes(box: Mailbox) -> int:
    try:
        return len(os.read(box.fd, 4096))
    except BlockingIOError:
        return 0


def test_one_wakeup_per_batch_and_closures_run_in_order():
    box = Mailbox()
    ran: list[int] = []
    for i in range(100):
        box.post(lambda i=i: ran.append(i))
    assert pending_bytes(box) == 1  # one byte for the hundred
    box.drain()
    assert ran == list(range(100))
    box.post(lambda: ran.append(100))  # drained: the next post wakes again
    assert readable(box)
    box.drain()
    assert ran[-1] == 100 and not readable(box)
    box.close()


def test_the_holder_wakes_the_reader_only_when_it_flushes():
    box = Mailbox()
    box.hold_for(threading.get_ident())
    box.post(lambda: None)
    box.post(lambda: None)
    assert not readable(box)  # held: the reader is not woken while the holder still runs
    box.flush(waiting=False)  # a busy turn, held for less than HOLD_LIMIT: still held
    assert not readable(box)
    box.flush()  # about to wait
    assert pending_bytes(box) == 1
    box.close()


def test_a_busy_holder_flushes_once_the_hold_is_old():
    box = Mailbox()
    box.hold_for(threading.get_ident())
    box.post(lambda: None)
    deadline = time.monotonic() + mailbox.HOLD_LIMIT
    while time.monotonic() < deadline:
        pass
    box.flush(waiting=False)
    assert readable(box)
    box.close()


def test_a_post_from_another_thread_is_not_held_behind_the_holder():
    box = Mailbox()
    box.hold_for(threading.get_ident())
    box.post(lambda: None)  # held by this thread
    other = threading.Thread(target=box.post, args=(lambda: None,))
    other.start()
    other.join(5)
    assert readable(box)  # the other thread's post woke the reader at once
    box.close()


def test_the_wakeup_writes_one_byte_and_a_full_pipe_is_no_error():
    box = Mailbox()
    for _ in range(70_000):  # more than a pipe holds: the writes past it fail with EAGAIN, silently
        mailbox._wake(box._w)
    box.drain()  # reads it all
    assert not readable(box)
    mailbox._wake(box._w)
    assert pending_bytes(box) == 1
    box.close()
