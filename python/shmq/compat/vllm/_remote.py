"""The ZeroMQ side of :mod:`shmq.compat.vllm` (remote readers), and its deadlines."""

from __future__ import annotations

import importlib
import secrets
import threading
import time
import weakref
from typing import Any


def _import_zmq() -> Any:
    """The ``zmq`` module, imported on first use (only queues with remote readers need it)."""
    try:
        return importlib.import_module("zmq")
    except ImportError as e:
        raise ImportError(
            "shmq.compat.vllm needs pyzmq for remote readers (ranks outside local_reader_ranks): "
            "pip install 'shmq[vllm]' (or 'pyzmq>=25')"
        ) from e


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, float(timeout))


def _close_zmq(context: Any, sockets: list[Any]) -> None:
    for s in sockets:
        s.close(linger=0)
    context.term()


class _Cancelled(Exception):
    """Internal: a wait was cancelled by ``shutdown()``."""


class _Zmq:
    """One queue's ZeroMQ side: a context, its data socket, and a cancel pair so that
    ``shutdown()`` from another thread wakes a blocked wait (sockets are not thread-safe)."""

    def __init__(self, owner: object, kind: str) -> None:
        # `owner`: the MessageQueue whose garbage collection closes the sockets.
        zmq = _import_zmq()
        self.zmq = zmq
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.XPUB if kind == "xpub" else zmq.SUB)
        path = f"inproc://shmq-vllm-cancel-{secrets.token_hex(8)}"
        self.cancel_tx = self.context.socket(zmq.PAIR)
        self.cancel_tx.bind(path)
        self.cancel_rx = self.context.socket(zmq.PAIR)
        self.cancel_rx.connect(path)
        self.poller = zmq.Poller()
        self.poller.register(self.socket, zmq.POLLIN)
        self.poller.register(self.cancel_rx, zmq.POLLIN)
        self.lock = threading.Lock()  # held by whoever uses `socket`; shutdown waits for it
        self.closed = False
        self.finalizer = weakref.finalize(
            owner, _close_zmq, self.context, [self.socket, self.cancel_tx, self.cancel_rx]
        )
        self.finalizer.atexit = False

    def recv(self, deadline: float | None) -> Any:
        """The next message (a ``zmq.Frame``); ``TimeoutError`` at ``deadline``."""
        with self.lock:
            if self.closed:
                raise _Cancelled
            left = _remaining(deadline)
            events = dict(self.poller.poll(None if left is None else int(left * 1000)))
            if self.cancel_rx in events:
                raise _Cancelled
            if self.socket not in events:
                raise TimeoutError
            return self.socket.recv(copy=False)

    def send(self, data: Any) -> None:
        with self.lock:
            if self.closed:
                raise _Cancelled
            self.socket.send(data, copy=True)  # `data` is the writer's scratch buffer

    def cancel(self) -> None:
        """Wakes a blocked ``recv`` (it raises), then closes everything once it has left."""
        if self.closed:
            return
        self.cancel_tx.send(b"\0")
        with self.lock:
            self.closed = True
            self.finalizer()
