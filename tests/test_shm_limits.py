"""A ``/dev/shm`` too small for what is asked (Docker's default is 64 MiB): a clear
``SharedMemoryFullError`` that says what was needed and what is free, never a SIGBUS later,
and nothing left behind. Each test runs Python in a private mount namespace with a small
tmpfs on ``/dev/shm`` (``unshare -m``), which needs root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to mount a private, small /dev/shm",
)


def run_in_small_shm(size: str, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` with a fresh ``size`` tmpfs as /dev/shm; the script prints what the test
    checks, and finally the entries left in /dev/shm."""
    script = textwrap.dedent(code) + "\nimport os\nprint('LEFT', sorted(os.listdir('/dev/shm')))\n"
    shell = f"mount -t tmpfs -o size={size} tmpfs /dev/shm && exec {sys.executable} -c \"$0\""
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", shell, script], capture_output=True, text=True, timeout=timeout
    )


def check(r: subprocess.CompletedProcess[str]) -> list[str]:
    assert r.returncode == 0, f"exit {r.returncode} (a SIGBUS is -7)\n{r.stdout}\n{r.stderr}"
    return r.stdout.splitlines()


def test_a_ring_larger_than_dev_shm_is_refused_at_creation() -> None:
    out = check(
        run_in_small_shm(
            "16m",
            """
            import shmq
            try:
                shmq.Queue("big", capacity="64MiB")
            except shmq.SharedMemoryFullError as e:
                assert isinstance(e, OSError) and e.errno == 28, e
                print("REFUSED", e)
            """,
        )
    )
    refused = next(line for line in out if line.startswith("REFUSED"))
    assert "67" in refused and "free" in refused and "--shm-size" in refused, refused
    assert out[-1] == "LEFT []"


def test_the_default_queue_on_a_2_MiB_dev_shm_is_refused_not_killed() -> None:
    out = check(
        run_in_small_shm(
            "2m",
            """
            import shmq
            try:
                q = shmq.Queue("dflt")
                for i in range(8):
                    q.put(b"x" * (1 << 20))
                print("PUT ALL")
            except shmq.SharedMemoryFullError:
                print("REFUSED")
            """,
        )
    )
    assert "REFUSED" in out
    assert out[-1] == "LEFT []"


def test_a_queue_that_fits_never_dies_of_sigbus_when_filled() -> None:
    # Reserved at creation: every byte of the ring is there, first lap included.
    out = check(
        run_in_small_shm(
            "16m",
            """
            import shmq
            q = shmq.Queue("fits", capacity="15MiB", codec="raw")
            n = 0
            try:
                while True:
                    q.put(b"y" * (1 << 20), timeout=0)
                    n += 1
            except shmq.Full:
                pass
            print("PUT", n)
            assert all(q.get() == b"y" * (1 << 20) for _ in range(n))
            q.close()
            """,
        )
    )
    assert any(line.startswith("PUT 1") for line in out), out  # 14 messages of 1 MiB
    assert out[-1] == "LEFT []"


def test_a_full_dev_shm_refuses_even_a_tiny_queue() -> None:
    out = check(
        run_in_small_shm(
            "1m",
            """
            import shmq
            with open("/dev/shm/filler", "wb") as f:
                f.write(b"z" * (1 << 20))
            try:
                shmq.Queue("tiny", capacity="64KiB")
            except shmq.SharedMemoryFullError:
                print("REFUSED")
            import os
            os.unlink("/dev/shm/filler")
            """,
        )
    )
    assert "REFUSED" in out
    assert out[-1] == "LEFT []"


def test_a_large_message_that_does_not_fit_is_a_failed_put_and_leaves_nothing() -> None:
    out = check(
        run_in_small_shm(
            "8m",
            """
            import shmq
            q = shmq.Queue("large", capacity="1MiB", allow_large=True, codec="raw")
            q.put(b"a" * 100)
            try:
                q.put(b"b" * (16 << 20))
            except shmq.SharedMemoryFullError as e:
                print("REFUSED", e)
            q.put(b"c" * (2 << 20))  # one that fits still goes through a side segment
            assert q.get() == b"a" * 100
            assert q.get() == b"c" * (2 << 20)
            assert q.qsize() == 0
            q.close()
            """,
        )
    )
    refused = next(line for line in out if line.startswith("REFUSED"))
    assert "16777216" in refused and "free" in refused, refused
    assert out[-1] == "LEFT []"
