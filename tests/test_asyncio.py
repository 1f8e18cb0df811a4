"""``shmq.asyncio``: async handles over the same segments as the synchronous ones, across
processes, on the default loop and on uvloop; cancellation never loses nor repeats a
message; an awaiting consumer sleeps (no polling); timeouts the asyncio way."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import shmq
import shmq.asyncio as shmq_aio

R = TypeVar("R")
LOOPS = ["asyncio", "uvloop"]


def run(kind: str, main: Callable[[], Awaitable[R]]) -> R:
    """Runs ``main()`` on a fresh loop of ``kind``."""
    if kind == "uvloop":
        import uvloop

        return uvloop.run(main())  # type: ignore[no-any-return]
    return asyncio.run(main())  # type: ignore[arg-type]


def child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(p: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return out


SYNC_PRODUCER = """
    import sys, time, shmq
    q = shmq.Queue(sys.argv[1], create=False)
    n, pause = int(sys.argv[2]), float(sys.argv[3])
    for i in range(n):
        q.put(i)
        if pause and i % 50 == 0:
            time.sleep(pause)
    q.close()
"""


@pytest.mark.parametrize("kind", LOOPS)
def test_sync_producer_in_another_process_async_consumer(qname: str, kind: str) -> None:
    n = 3000

    async def main() -> list[int]:
        async with shmq_aio.Queue(qname, create=True, capacity="64KiB") as q:
            p = child(SYNC_PRODUCER, qname, str(n), "0.002")
            got = [await q.get(timeout=30) for _ in range(n // 2)]
            while len(got) < n:
                got += await q.get_many(100, timeout=30)
            finish(p)
            return got

    assert run(kind, main) == list(range(n))


ASYNC_PRODUCER = """
    import asyncio, sys, shmq.asyncio as shmq_aio
    async def main():
        async with shmq_aio.Queue(sys.argv[1], create=False) as q:
            n = int(sys.argv[2])
            for i in range(0, n // 2):
                await q.put(i)
            await q.put_many(range(n // 2, n))
    if sys.argv[3] == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
"""


@pytest.mark.parametrize("kind", LOOPS)
def test_async_producer_in_another_process_waits_for_room_sync_consumer(qname: str, kind: str) -> None:
    n = 3000
    with shmq.Queue(qname, create=True, maxsize=8, capacity="64KiB") as q:
        p = child(ASYNC_PRODUCER, qname, str(n), kind)
        got = []
        for i in range(n):
            got.append(q.get(timeout=30))
            if i % 500 == 0:
                time.sleep(0.05)  # the producer's puts find the queue full and wait
        finish(p)
        assert got == list(range(n))
        assert q.stats().waits > 0


@pytest.mark.parametrize("kind", LOOPS)
def test_timeouts_the_asyncio_way_and_with_timeout(qname: str, kind: str) -> None:
    async def main() -> None:
        async with shmq_aio.Queue(qname, create=True) as q:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await q.get()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(q.get(), 0.05)
            t0 = time.monotonic()
            with pytest.raises(shmq.Empty):
                await q.get(timeout=0.1)
            assert time.monotonic() - t0 >= 0.1
            with pytest.raises(shmq.Empty):
                await q.get_many(timeout=0)
            # Nothing was taken by the calls that timed out: the next put is the next get.
            q.put_nowait("after")
            assert await asyncio.wait_for(q.get(), 5) == "after"

    run(kind, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_a_timeout_is_never_shorter_than_asked_by_the_real_clock(qname: str, kind: str) -> None:
    """uvloop's ``loop.time()`` counts whole milliseconds, up to one behind the real clock: a
    deadline taken from it ended waits up to 1 ms early (``get(timeout=...)`` measured by
    ``time.monotonic()``, as a caller would)."""

    async def main() -> None:
        async with shmq_aio.Queue(qname, create=True) as q:
            for k in range(150):
                await asyncio.sleep(0.0003 * (k % 7))  # vary where in a millisecond we start
                t0 = time.monotonic()
                with pytest.raises(shmq.Empty):
                    await q.get(timeout=0.005)
                assert time.monotonic() - t0 >= 0.005

    run(kind, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_a_full_queue_put_times_out_and_publishes_nothing(qname: str, kind: str) -> None:
    async def main() -> None:
        async with shmq_aio.Queue(qname, create=True, maxsize=1) as q:
            await q.put(1)
            with pytest.raises(shmq.Full):
                await q.put(2, timeout=0.05)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await q.put(3)
            assert q.qsize() == 1
            waiting = asyncio.create_task(q.put(4))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            assert q.get_nowait() == 1  # makes room: the waiting put goes in
            await asyncio.wait_for(waiting, 5)
            assert q.get_nowait() == 4 and q.empty()

    run(kind, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_async_for_and_async_with_close(qname: str, kind: str) -> None:
    async def main() -> None:
        q: shmq_aio.Queue[int] = shmq_aio.Queue(qname, create=True)
        async with q:
            got: list[int] = []

            async def reader() -> None:
                async for m in q:
                    got.append(m)

            t = asyncio.create_task(reader())
            for i in range(5):
                await q.put(i)
            await asyncio.sleep(0.05)
            assert got == [0, 1, 2, 3, 4] and not t.done()
        # Leaving `async with` closed the queue: the reader's `async for` ended.
        assert q.closed
        await asyncio.wait_for(t, 5)
        with pytest.raises(shmq.QueueClosedError):
            await q.get()

    run(kind, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_close_ends_a_waiting_get_at_once(qname: str, kind: str) -> None:
    async def main() -> None:
        q = shmq_aio.Queue(qname, create=True)
        t = asyncio.create_task(q.get())
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        q.close()
        with pytest.raises(shmq.QueueClosedError):
            await asyncio.wait_for(t, 5)
        # Well before the helper's 100 ms poll, and close() did not wait for the get to let
        # go of the ring (it disarmed the wait itself).
        assert time.monotonic() - t0 < 0.09

    run(kind, main)


SYNC_PUBLISHER = """
    import sys, time, shmq
    b = shmq.Broadcast(sys.argv[1], create=False)
    while b.stats().subscribers == []:
        time.sleep(0.01)
    for i in range(int(sys.argv[2])):
        b.publish(i)
        if i % 100 == 0:
            time.sleep(0.002)
    b.close()
"""


@pytest.mark.parametrize("kind", LOOPS)
def test_sync_publisher_in_another_process_async_subscribers(qname: str, kind: str) -> None:
    n = 1000

    async def main() -> tuple[list[int], list[int]]:
        async with shmq_aio.Broadcast(qname, create=True, capacity="64KiB") as b:
            s1 = b.subscribe()
            s2 = shmq_aio.Subscriber(qname)
            p = child(SYNC_PUBLISHER, qname, str(n))

            async def collect(s: shmq_aio.Subscriber[int], many: bool) -> list[int]:
                got: list[int] = []
                async with s:
                    while len(got) < n:
                        got += await s.get_many(timeout=30) if many else [await s.get(timeout=30)]
                return got

            a, c = await asyncio.gather(collect(s1, False), collect(s2, True))
            finish(p)
            return a, c

    a, c = run(kind, main)
    assert a == c == list(range(n))


@pytest.mark.parametrize("kind", LOOPS)
def test_async_publisher_waits_for_a_slow_subscriber(qname: str, kind: str) -> None:
    async def main() -> None:
        async with shmq_aio.Broadcast(qname, create=True, capacity=4096) as b:
            async with b.subscribe() as s:
                pub = asyncio.create_task(b.publish_many([b"x" * 500] * 40))
                got = 0
                while got < 40:
                    got += len(await s.get_many(timeout=10))
                await asyncio.wait_for(pub, 10)
                assert b.stats().subscribers[0].lag_messages == 0

    run(kind, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_many_waiters_on_many_queues_of_one_loop(qname: str, kind: str) -> None:
    """More awaited words than one futex_waitv takes (128): every waiter still gets its
    message."""
    n = 150

    async def main() -> None:
        qs = [shmq_aio.Queue(f"{qname}-{i}", create=True, capacity=4096) for i in range(n)]
        try:
            for q in qs:
                q.spin = False
            tasks = [asyncio.create_task(q.get(timeout=30)) for q in qs]
            await asyncio.sleep(0.1)
            for i, q in enumerate(qs):
                q.sync.put(i)
            assert await asyncio.gather(*tasks) == list(range(n))
        finally:
            for q in qs:
                q.close()

    run(kind, main)


# ---------------------------------------------------------------------------------------
# Cancellation storms: every message checked by its sequence number
# ---------------------------------------------------------------------------------------

STORM_PRODUCER = """
    import sys, time, shmq
    q = shmq.Queue(sys.argv[1], create=False)
    n = int(sys.argv[2])
    for i in range(n):
        q.put(i)
        if i % 7 == 0:
            time.sleep(0.0003)
    q.close()
"""


async def _cancel_in_some_way(rng: random.Random, call: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
    """Runs ``call()`` and cancels it at a random time in one of several ways (a timeout
    scope, ``wait_for``, ``task.cancel()``, a ``TaskGroup`` shutting down); returns
    ``(True, result)`` if it completed anyway, ``(False, None)`` if it was cancelled."""
    how = rng.randrange(4)
    delay = rng.choice([0, 0, 1e-5, 1e-4, 5e-4, 2e-3])
    task: asyncio.Future[Any] | None = None
    try:
        if how == 0:
            async with asyncio.timeout(delay):
                return True, await call()
        elif how == 1:
            return True, await asyncio.wait_for(call(), delay)
        elif how == 2:
            task = asyncio.ensure_future(call())
            await asyncio.sleep(delay)
            task.cancel()
            return True, await task
        else:
            async with asyncio.TaskGroup() as tg:

                async def fail() -> None:
                    await asyncio.sleep(delay)
                    raise LookupError

                task = tg.create_task(call())  # type: ignore[arg-type]
                tg.create_task(fail())
    except (TimeoutError, asyncio.CancelledError, LookupError, ExceptionGroup):
        pass
    if task is not None:
        # (A cancellation meant for an earlier call may land here: keep waiting for the call.)
        while not task.done():
            task.cancel()
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                pass
        if not task.cancelled() and task.exception() is None:
            return True, task.result()
    return False, None


@pytest.mark.parametrize("kind", LOOPS)
def test_cancelled_gets_neither_lose_nor_repeat_messages(qname: str, kind: str) -> None:
    n = 6000
    rng = random.Random(12)

    async def main() -> tuple[list[int], int]:
        async with shmq_aio.Queue(qname, create=True, capacity="256KiB") as q:
            p = child(STORM_PRODUCER, qname, str(n))
            got: list[int] = []
            cancelled = 0
            while len(got) < n:
                many = rng.random() < 0.3
                done, r = await _cancel_in_some_way(rng, (lambda: q.get_many(5)) if many else q.get)
                if done:
                    got += r if many else [r]
                else:
                    cancelled += 1
                if p.poll() is not None and q.empty() and len(got) < n:
                    break  # lost messages: the assertion below says which
            finish(p)
            return got, cancelled

    got, cancelled = run(kind, main)
    assert cancelled > 200, cancelled  # the storm did cancel calls, often
    assert sorted(got) == list(range(n)), f"missing {sorted(set(range(n)) - set(got))[:10]}, {len(got)} got"
    assert got == list(range(n))  # one consumer: in order too


STORM_CONSUMER = """
    import sys, shmq
    q = shmq.Queue(sys.argv[1], create=False)
    got = []
    while True:
        m = q.get(timeout=60)
        if m is None:
            break
        got.append(m)
    print(" ".join(map(str, got)))
"""


@pytest.mark.parametrize("kind", LOOPS)
def test_a_cancelled_put_published_or_did_not(qname: str, kind: str) -> None:
    n = 3000
    rng = random.Random(7)

    async def main() -> tuple[list[int], int]:
        async with shmq_aio.Queue(qname, create=True, maxsize=4, capacity="64KiB") as q:
            p = child(STORM_CONSUMER, qname)
            completed: list[int] = []
            cancelled = 0
            for i in range(n):
                if rng.random() < 0.2:
                    done, _ = await _cancel_in_some_way(rng, lambda: q.put_many([i, -i - 1]))
                    if done:
                        completed += [i, -i - 1]
                else:
                    done, _ = await _cancel_in_some_way(rng, lambda: q.put(i))
                    if done:
                        completed.append(i)
                cancelled += not done
            await q.put(None, timeout=60)
            out = finish(p)
            return [int(x) for x in out.split()], cancelled, completed  # type: ignore[return-value]

    received, cancelled, completed = run(kind, main)  # type: ignore[misc]
    assert cancelled > 300, cancelled
    # What completed is exactly what arrived: a cancelled put put nothing (a batch that was
    # cut short would show as half of a pair).
    assert received == completed


# ---------------------------------------------------------------------------------------
# Idle: an awaiting consumer sleeps
# ---------------------------------------------------------------------------------------

IDLE_CHILD = """
    import asyncio, resource, sys, time, shmq, shmq.asyncio as shmq_aio
    async def main():
        qs = [shmq_aio.Queue(name, create=False) for name in sys.argv[1].split(",")]
        def cpu():
            ru = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
            return ru.ru_utime + ru.ru_stime
        # Warm: the first get sets up the loop's helper (imports, a thread), not the wait.
        try:
            await qs[0].get(timeout=0)
        except shmq.Empty:
            pass
        t0, c0 = time.monotonic(), cpu()
        # One waiter per queue, and two on the first.
        calls = [q.get(timeout=float(sys.argv[2])) for q in qs] + [qs[0].get(timeout=float(sys.argv[2]))]
        for r in await asyncio.gather(*calls, return_exceptions=True):
            assert isinstance(r, shmq.Empty), r
        wall, used = time.monotonic() - t0, cpu() - c0
        print(f"{wall:.3f} {used:.3f}", flush=True)
        for q in qs:
            q.close()
    if sys.argv[3] == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
"""


@pytest.mark.parametrize("kind", LOOPS)
def test_an_awaiting_consumer_uses_almost_no_cpu(qname: str, kind: str) -> None:
    names = [f"{qname}-{i}" for i in range(3)]
    qs = [shmq.Queue(n, create=True) for n in names]
    try:
        def measure(timeout: str) -> tuple[float, float]:
            wall, cpu = map(float, finish(child(IDLE_CHILD, ",".join(names), timeout, kind)).split())
            return wall, cpu

        wall, cpu_waiting = measure("2.0")
    finally:
        for q in qs:
            q.close()
    assert wall >= 2.0
    # The CPU used during the wait only (measured in the child around it, so that the
    # interpreter's start and imports, which vary with the machine's load, do not count). A
    # poller or a spinner would burn most of the two seconds; the helper thread and the loop
    # wake 10 times a second (the 100 ms cap of every sleep) and spin once, 50 µs.
    assert cpu_waiting < 0.1, cpu_waiting


# ---------------------------------------------------------------------------------------
# Shutdown
# ---------------------------------------------------------------------------------------

SHUTDOWN_AFTER = """
    import sys, time, shmq
    q = shmq.Queue(sys.argv[1], create=False)
    q.put_many([1, 2, 3])
    time.sleep(0.2)
    q.shutdown()
    q.close()
"""


@pytest.mark.parametrize("kind", LOOPS)
def test_a_shutdown_in_another_process_ends_awaiting_gets_after_draining(qname: str, kind: str) -> None:
    async def main() -> None:
        async with shmq_aio.Queue(qname, create=True) as q:
            q.spin = False
            p = child(SHUTDOWN_AFTER, qname)
            got = [m async for m in q]  # ends on the shutdown, after taking what was left
            finish(p)
            assert got == [1, 2, 3]
            assert q.is_shutdown
            t0 = time.monotonic()
            with pytest.raises(shmq.ShutDown):
                await q.get()  # at once, not after a timeout
            with pytest.raises(shmq.ShutDown):
                await q.put(4)
            assert time.monotonic() - t0 < 0.05

    run(kind, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_shutdown_wakes_waiting_gets_puts_and_subscribers(qname: str, kind: str) -> None:
    async def main() -> None:
        async with (
            shmq_aio.Queue(f"{qname}-full", create=True, maxsize=1) as full,
            shmq_aio.Queue(f"{qname}-empty", create=True) as empty,
            shmq_aio.Broadcast(f"{qname}-b", create=True) as b,
            b.subscribe() as s,
        ):
            await full.put(0)
            waiting = [asyncio.create_task(c) for c in (full.put(1), empty.get(), s.get())]
            await asyncio.sleep(0.05)
            assert not any(t.done() for t in waiting)
            t0 = time.monotonic()
            full.shutdown()
            empty.shutdown()
            b.shutdown()
            for t in waiting:
                with pytest.raises(shmq.ShutDown):
                    await asyncio.wait_for(t, 5)
            assert time.monotonic() - t0 < 0.09  # woken, not found by the 100 ms poll
            assert full.get_nowait() == 0  # a plain shutdown leaves what was queued

    run(kind, main)


def test_a_forked_child_leaves_the_parents_armed_wait_alone(qname: str) -> None:
    """A child forked while a get waits inherits its armed wait (a Python object). Disarming
    it there, as the child's garbage collection would, must not take the parent's waiter out
    of the event's count: notifiers would then skip the wake-up and the parent's get would
    only see the message at its 100 ms poll."""
    import os

    async def main() -> float:
        async with shmq_aio.Queue(qname, create=True) as q:
            q.spin = False
            t = asyncio.create_task(q.get())
            await asyncio.sleep(0.01)
            ((_, armed),) = q._waiting.waits.values()
            pid = os.fork()
            if pid == 0:
                armed.disarm()
                os._exit(0)
            assert os.waitpid(pid, 0)[1] == 0
            t0 = time.monotonic()
            q.sync.put(1)
            assert await asyncio.wait_for(t, 5) == 1
            return time.monotonic() - t0

    assert asyncio.run(main()) < 0.05
