"""What the child processes of tests/test_semantics.py run (importable by spawn children:
pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import shmq


def get_until_shutdown(name: str, results: str) -> None:
    """Gets from queue ``name`` (blocking, no timeout) until ``ShutDown``; puts what it got,
    then the name of the exception that stopped it, on queue ``results``."""
    q = shmq.Queue(name, create=False)
    out = shmq.Queue(results, create=False)
    got = []
    try:
        while True:
            got.append(q.get())
    except Exception as e:  # the test checks which one
        out.put((got, type(e).__name__))
    q.close()
    out.close()


def put_after_shutdown(name: str, go: str, results: str) -> None:
    """Waits on queue ``go`` for the word, then tries a put on ``name`` and reports the
    exception's name on ``results``."""
    q = shmq.Queue(name, create=False)
    out = shmq.Queue(results, create=False)
    assert shmq.Queue(go, create=False).get(timeout=30) == "go"
    try:
        q.put("late")
        out.put("no exception")
    except Exception as e:
        out.put(type(e).__name__)
    q.close()
    out.close()


def subscriber_until_shutdown(name: str, results: str, ready: str) -> None:
    """Subscribes to broadcast ``name``, says so on ``ready``, reads until ``ShutDown``."""
    sub = shmq.Subscriber(name)
    out = shmq.Queue(results, create=False)
    shmq.Queue(ready, create=False).put("subscribed")
    got = []
    try:
        while True:
            got.append(sub.get())
    except Exception as e:
        out.put((got, type(e).__name__))
    sub.close()
    out.close()
