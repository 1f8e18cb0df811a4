"""Every bad input gives a clear error naming the argument: one test per row of the table in
docs/errors.md ("Bad input and what it raises"), in the same order."""

from __future__ import annotations

import errno
import importlib
import os
import pickle
import queue as stdqueue
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import _helpers as h
import shmq

MakeQueue = Callable[..., shmq.Queue]


@pytest.fixture
def make_broadcast(qname: str) -> Iterator[Callable[..., shmq.Broadcast]]:
    """``make_broadcast(name=None, **kwargs)`` like ``make_queue``: closed at teardown."""
    made: list[shmq.Broadcast] = []

    def make(name: str | None = None, **kwargs: Any) -> shmq.Broadcast:
        if name is None:
            name = f"{qname}-b{len(made)}"
            kwargs.setdefault("create", True)
        b: shmq.Broadcast = shmq.Broadcast(name, **kwargs)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shmq", *args], capture_output=True, text=True, timeout=60)


# --------------------------------------------------------------------------------------
# Flags: bool only (block stays the stdlib's: any truth value)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Queue", "Broadcast"])
@pytest.mark.parametrize("flag", ["persistent", "allow_pickle", "allow_large"])
@pytest.mark.parametrize("bad", ["no", "", 0, 1, None])
def test_flags_take_a_bool_only(qname: str, kind: str, flag: str, bad: Any) -> None:
    # Was: persistent="no" made a persistent queue (any truthy value meant True).
    with pytest.raises(TypeError, match=f"^{flag} must be True or False, not "):
        getattr(shmq, kind)(qname, create=True, **{flag: bad})
    assert qname not in shmq.list_queues()


def test_subscriber_allow_pickle_takes_a_bool_only(make_broadcast: Callable[..., shmq.Broadcast]) -> None:
    b = make_broadcast()
    with pytest.raises(TypeError, match="allow_pickle must be True or False"):
        shmq.Subscriber(b.name, allow_pickle="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="allow_pickle must be True or False"):
        b.subscribe(allow_pickle=0)  # type: ignore[arg-type]
    assert b.stats().subscribers == []


def test_create_and_copy_take_a_bool_only(qname: str, make_broadcast: Callable[..., shmq.Broadcast]) -> None:
    with pytest.raises(TypeError, match="create must be None, True or False"):
        shmq.Queue(qname, create="yes")  # type: ignore[arg-type]
    with make_broadcast().subscribe() as sub, pytest.raises(TypeError, match="'copy'"):
        sub.get(block=False, copy="no")  # type: ignore[call-overload]


def test_block_takes_any_truth_value_as_the_stdlib(make_queue: MakeQueue, make_broadcast: Callable[..., shmq.Broadcast]) -> None:
    # Was: block=0 was a TypeError ('int' object cannot be cast as 'bool'); queue.Queue and
    # multiprocessing.Queue take any truth value.
    std: stdqueue.Queue[int] = stdqueue.Queue(maxsize=1)
    q = make_queue(maxsize=1)
    for target in (std, q):
        target.put(1, block=1)  # type: ignore[arg-type]
        with pytest.raises(stdqueue.Full):
            target.put(2, block=0)  # type: ignore[arg-type]
        assert target.get(block="yes", timeout=5) == 1  # type: ignore[arg-type]
        with pytest.raises(stdqueue.Empty):
            target.get(block="")  # type: ignore[arg-type]
    q.put_many([3], block=0)  # type: ignore[arg-type]
    assert q.get_many(1, block=[], timeout=None) == [3]  # type: ignore[arg-type]
    b = make_broadcast()
    with b.subscribe() as sub:
        b.publish(4, block=0)  # type: ignore[arg-type]
        b.publish_many([5], 1)  # type: ignore[arg-type]
        assert sub.get(block=1) == 4  # type: ignore[call-overload]
        assert sub.get_many(5, 0) == [5]  # type: ignore[arg-type]


def test_a_huge_timeout_waits_forever_and_a_negative_one_is_refused(make_queue: MakeQueue) -> None:
    # Was: timeout=10**400 was a bare OverflowError (int too large to convert to float).
    q = make_queue()
    q.put("x", timeout=10**400)
    assert q.get(timeout=10**400) == "x"  # as 1e300: forever, and a message is there
    for bad in (-1, -(10**400), float("nan")):
        with pytest.raises(shmq.InvalidArgumentError, match="'timeout' must be a non-negative number"):
            q.get(timeout=bad)
    with pytest.raises(TypeError, match="'timeout'"):
        q.get(timeout="1")  # type: ignore[arg-type]


class _FloatLike:
    """Seconds through ``__float__`` only (as a NumPy float32 scalar)."""

    def __float__(self) -> float:
        return 0.01


def test_timeout_takes_any_real_number_in_the_compat_modules_too(qname: str) -> None:
    # Was: compat.smq's put_async/get_async compared the timeout with 0.0 (TypeError: '>'
    # not supported between instances of '_FloatLike' and 'float'). The queues' own
    # calls took it already (tests/test_semantics.py::test_timeout_any_real_number).
    import asyncio

    from shmq.compat import smq

    q = smq.SharedMemoryQueue(qname, create=True, capacity=1, item_size=64)
    try:
        asyncio.run(q.put_async("a", _FloatLike()))  # type: ignore[arg-type]
        with pytest.raises(smq.Full):
            asyncio.run(q.put_async("b", _FloatLike()))  # type: ignore[arg-type]
        assert asyncio.run(q.get_async(_FloatLike())) == "a"  # type: ignore[arg-type]
    finally:
        q.close()
        q.unlink()


def test_shutdown_immediate_takes_any_truth_value(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put("x")
    q.shutdown(immediate=1)  # type: ignore[arg-type]
    assert q.stats().dropped == 1


# --------------------------------------------------------------------------------------
# Codecs
# --------------------------------------------------------------------------------------


def _enc_a(obj: Any) -> bytes:
    return repr(obj).encode()


def _dec_a(data: bytes) -> Any:
    return data.decode()


@pytest.mark.parametrize("builtin", ["raw", "pickle", "msgpack"])
def test_register_codec_refuses_a_builtin_name(make_queue: MakeQueue, builtin: str) -> None:
    # Was: name="pickle" took over Queue(codec="pickle") for the rest of the process.
    with pytest.raises(shmq.InvalidArgumentError, match=f"name '{builtin}' is a built-in codec's"):
        shmq.register_codec(4101, _enc_a, _dec_a, name=builtin)
    assert make_queue(codec=builtin).codec_id == shmq.codec_id(builtin) < shmq.FIRST_USER_CODEC


def test_register_codec_refuses_an_id_or_a_name_taken_by_other_functions(make_queue: MakeQueue) -> None:
    # Was: the second registration silently replaced the first.
    shmq.register_codec(4102, _enc_a, _dec_a, name="bad-inputs-a")
    with pytest.raises(shmq.InvalidArgumentError, match="codec 4102 is already registered with other functions"):
        shmq.register_codec(4102, _enc_a, lambda b: b"replaced")
    with pytest.raises(shmq.InvalidArgumentError, match="name 'bad-inputs-a' is already registered for codec 4102"):
        shmq.register_codec(4103, _enc_a, _dec_a, name="bad-inputs-a")
    q = make_queue(codec="bad-inputs-a")
    q.put([1])
    assert q.get() == "[1]"  # still the first registration's


def test_register_codec_again_with_the_same_functions_is_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shmq.register_codec(4104, _enc_a, _dec_a)
    shmq.register_codec(4104, _enc_a, _dec_a, name="bad-inputs-b")  # same pair, a name added
    # A module that registers its codec when imported, reloaded: new function objects, same
    # definitions.
    module = f"bad_inputs_codec_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            import shmq
            def encode(obj): return str(obj).encode()
            def decode(data): return data.decode()
            shmq.register_codec(4105, encode, decode, name="bad-inputs-c")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        mod = importlib.import_module(module)
        first = mod.encode
        importlib.reload(mod)
        assert mod.encode is not first
    finally:
        sys.modules.pop(module, None)
    assert shmq.codec_id("bad-inputs-c") == 4105


def test_put_and_publish_take_codec_names(make_queue: MakeQueue, make_broadcast: Callable[..., shmq.Broadcast]) -> None:
    # Was: put(codec="raw") was a TypeError ('str' object cannot be interpreted as an integer).
    shmq.register_codec(4106, _enc_a, _dec_a, name="bad-inputs-d")
    q = make_queue()
    q.put(b"r", codec="raw")
    q.put({"m": 1}, codec="msgpack")
    q.put_many([b"s"], codec="raw")
    q.put(7, codec="bad-inputs-d")
    assert q.get_many(10) == [b"r", {"m": 1}, b"s", "7"]
    b = make_broadcast()
    with b.subscribe() as sub:
        b.publish(b"p", codec="raw")
        b.publish_many([b"q"], codec="raw")
        b.put(b"t", codec="raw")
        assert sub.get_many(10) == [b"p", b"q", b"t"]


def test_put_with_a_bad_codec_says_what_codecs_exist(queue: shmq.Queue) -> None:
    with pytest.raises(shmq.InvalidArgumentError, match="unknown codec 'nope'; choose one of"):
        queue.put(b"x", codec="nope")
    with pytest.raises(shmq.InvalidArgumentError, match="codec id 1180591620717411303424 is neither built in"):
        queue.put(b"x", codec=2**70)
    with pytest.raises(TypeError, match="codec must be a name or an int id, not bool"):
        queue.put(b"x", codec=True)
    assert queue.empty()


def test_raw_codec_of_a_non_bytes_object_is_a_codec_error(make_queue: MakeQueue) -> None:
    # Was: a bare TypeError.
    q = make_queue(codec="raw")
    with pytest.raises(shmq.CodecError, match="the raw codec needs a bytes-like object, not int"):
        q.put(1)
    assert isinstance(shmq.CodecError("x"), TypeError)


# --------------------------------------------------------------------------------------
# Numbers out of range
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"maxsize": 2**70}, r"maxsize must be at most 2\*\*64 - 1"),  # was: OverflowError: int too big to convert
        ({"capacity": 2**70}, r"capacity must be at most 1 TiB \(1099511627776 bytes\)"),  # was: OverflowError
        ({"capacity": 2**63}, r"capacity must be at most 1 TiB"),  # was: "capacity ... or max_processes ..."
        ({"capacity": "2TiB"}, r"capacity must be at most 1 TiB"),
        ({"max_processes": 2**40}, r"max_processes must be 1\.\.4096, got 1099511627776"),
        ({"mode": 2**40}, r"mode must be 0\.\.0o777"),
        ({"codec": 2**70}, r"codec id 1180591620717411303424 is neither built in"),
    ],
)
def test_large_ints_name_the_argument_and_its_range(qname: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(shmq.InvalidArgumentError, match=message) as e:
        shmq.Queue(qname, **kwargs)
    assert "max_processes" not in str(e.value) or "max_processes" in kwargs
    assert qname not in shmq.list_queues()


def test_large_ints_in_method_arguments_name_the_argument(queue: shmq.Queue) -> None:
    # Was: bare OverflowErrors (Python int too large to convert to C long).
    with pytest.raises(shmq.InvalidArgumentError, match="max_messages must be at least 1"):
        queue.get_many(2**70)
    with pytest.raises(shmq.InvalidArgumentError, match="max_messages must be at least 1"):
        queue.get_many(0)
    with pytest.raises(shmq.InvalidArgumentError, match="user codec ids are 1001..65535"):
        shmq.register_codec(2**70, _enc_a, _dec_a)
    with pytest.raises(shmq.InvalidArgumentError, match="init_grace must be a non-negative number"):
        shmq.gc(-1)
    assert isinstance(shmq.gc(10**400), list)  # as long as you like (was: OverflowError)


def test_rust_capacity_error_names_the_capacity_only(qname: str) -> None:
    # Was (Rust): "capacity 9223372036854775808 (must be 1..=2^40) or max_processes 128 (1..=4096)".
    # The Python checks come first; the crate's own message is checked by cargo test
    # (crates/shmq/tests/bad_inputs.rs); this checks it reaches Python as InvalidArgumentError.
    with pytest.raises(shmq.InvalidArgumentError, match="out of range: it must be 1..=1099511627776 bytes"):
        shmq._shmq._Queue(qname, capacity=2**41)
    assert qname not in shmq.list_queues()


# --------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1TiB", 1024**4),  # was: "cannot parse capacity '1TiB'"
        ("1 TB", 1000**4),
        ("1T", 1000**4),
        ("0.5TiB", 1024**4 // 2),
        ("64Mi", 64 * 1024**2),
        ("3.3TB", 3_300_000_000_000),
        ("1099511627777", 1099511627777),
    ],
)
def test_parse_size_knows_terabytes(text: str, expected: int) -> None:
    assert shmq.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["1PiB", "1e6", "12 parsecs", "TiB"])
def test_unparseable_sizes_say_what_parses(bad: str) -> None:
    with pytest.raises(shmq.InvalidArgumentError, match="cannot parse capacity .* '1TiB'"):
        shmq.parse_size(bad)


# --------------------------------------------------------------------------------------
# Settings that contradict the existing queue or broadcast
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, setting, requested, existing",
    [
        ({"maxsize": 100}, "maxsize", 100, 7),
        ({"maxsize": 0}, "maxsize", 0, 7),
        ({"capacity": "1MiB"}, "capacity", 1 << 20, 65536),
        ({"capacity": 8192}, "capacity", 8192, 65536),
    ],
)
def test_explicit_sizes_must_match_the_existing_queue(
    make_queue: MakeQueue, qname: str, kwargs: dict[str, Any], setting: str, requested: int, existing: int
) -> None:
    # Was: silently ignored (a 64 KiB queue with maxsize 7 opened as asked for 1 MiB, 100).
    a = make_queue(capacity="64KiB", maxsize=7)
    with pytest.raises(shmq.MismatchError, match=f"exists with {setting}={existing}, not {setting}=") as e:
        shmq.Queue(qname, **kwargs)
    assert (e.value.setting, e.value.requested, e.value.existing) == (setting, requested, existing)
    assert isinstance(e.value, ValueError) and isinstance(e.value, shmq.ShmqError)
    assert a.stats().attached == 1  # the refused handle did not stay attached
    assert pickle.loads(pickle.dumps(e.value)).existing == existing


def test_sizes_left_out_open_any_queue_and_equal_ones_match(make_queue: MakeQueue, qname: str) -> None:
    make_queue(capacity=5000, maxsize=7)  # a ring of 8192 bytes
    assert make_queue(qname).capacity == 8192  # nothing given: opens as it is
    assert make_queue(qname, create=False).maxsize == 7
    assert make_queue(qname, capacity=5000, maxsize=7).capacity == 8192  # the same request
    assert make_queue(qname, capacity="8KiB").capacity == 8192
    assert pickle.loads(pickle.dumps(make_queue(qname))).maxsize == 7  # pickles reopen as is
    unbounded = make_queue(f"{qname}-u", create=True, maxsize=-1)
    assert make_queue(unbounded.name, maxsize=0).maxsize == 0  # <= 0 is unbounded, both times


def test_explicit_capacity_and_policy_must_match_the_existing_broadcast(
    make_broadcast: Callable[..., shmq.Broadcast],
) -> None:
    # Was: Broadcast(name, capacity="1MiB", policy="lag") opened a 64 KiB 'block' broadcast.
    b = make_broadcast(capacity="64KiB")
    with pytest.raises(shmq.MismatchError, match="exists with policy='block', not policy='lag'"):
        shmq.Broadcast(b.name, policy="lag")
    with pytest.raises(shmq.MismatchError, match=r"exists with capacity=65536, not capacity='1MiB' \(a ring of 1048576"):
        shmq.Broadcast(b.name, capacity="1MiB")
    assert b.stats().attached == 1
    assert make_broadcast(b.name, policy="block", capacity=65536).capacity == 65536
    assert make_broadcast(b.name).policy == "block"


# --------------------------------------------------------------------------------------
# A batch put part-way
# --------------------------------------------------------------------------------------


def test_a_partial_put_many_tells_how_many_went_in_so_a_retry_puts_each_once(make_queue: MakeQueue) -> None:
    # Was: a bare Full (with a note, "4 of the 10 messages were put ..."): no count to retry from.
    q = make_queue(capacity=4096, codec="raw")
    items = [bytes([i]) * 1000 for i in range(10)]  # 4 fit in the ring at once
    received: list[bytes] = []
    rest = items
    while rest:
        try:
            q.put_many(rest, block=False)
            rest = []
        except shmq.Full as e:
            assert 0 < e.sent < len(rest), e.sent
            rest = rest[e.sent :]
        received.extend(q.get_many(100))
    assert received == items  # every item exactly once, in order


def test_a_partial_publish_many_tells_how_many_went_in(make_broadcast: Callable[..., shmq.Broadcast]) -> None:
    b = make_broadcast(capacity=4096, codec="raw")
    items = [bytes([i]) * 1000 for i in range(10)]
    with b.subscribe() as sub:
        received: list[bytes] = []
        rest = items
        while rest:
            try:
                b.publish_many(rest, block=False)
                rest = []
            except shmq.Full as e:
                assert 0 < e.sent < len(rest), e.sent
                rest = rest[e.sent :]
            received.extend(sub.get_many(100))
        assert received == items


def test_a_put_many_that_fails_before_sending_says_none_went_in(queue: shmq.Queue) -> None:
    with pytest.raises(shmq.CodecError) as e:
        queue.put_many([1, lambda: None])  # the second cannot be pickled: nothing is sent
    assert getattr(e.value, "sent") == 0
    assert queue.empty()


# --------------------------------------------------------------------------------------
# Broadcast's second positional
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("second", [100, "64KiB"])
def test_broadcast_takes_capacity_by_keyword_only(qname: str, second: Any) -> None:
    # Was: Broadcast("x", 100) made a 4096-byte ring, where Queue("x", 100) means maxsize=100.
    with pytest.raises(TypeError, match=r"Broadcast\(\) takes capacity by keyword only: Broadcast\(name, capacity="):
        shmq.Broadcast(qname, second)  # type: ignore[misc]
    assert qname not in shmq.list_queues()


# --------------------------------------------------------------------------------------
# Command line: one line on stderr, exit status 1 (2 for usage errors), never a traceback
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("grace", ["-1", "nan", "soon"])
def test_cli_gc_with_a_bad_grace_is_a_usage_error(grace: str) -> None:
    # Was: -1 and nan ended in a ValueError traceback (exit status 1).
    out = cli("gc", "--grace", grace)
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr and "argument --grace" in out.stderr


def test_cli_rm_of_a_directory_leaves_it_and_says_so(qname: str) -> None:
    # Was: an IsADirectoryError traceback.
    path = h.segment_path(qname)
    path.mkdir()
    try:
        out = cli("rm", qname)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert out.stderr == f"shmq rm: {qname}: {path} is a directory, not a shared-memory segment: left alone\n"
        assert path.is_dir()
    finally:
        path.rmdir()


def test_cli_rm_of_a_missing_name_says_there_is_none(qname: str) -> None:
    # Was: "[Errno 2] No such file or directory: '/dev/shm/shmq-...'".
    out = cli("rm", qname, "bad/name")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert lines[0] == f"shmq rm: {qname}: no queue or broadcast named {qname!r}"
    assert lines[1].startswith("shmq rm: bad/name: invalid queue name")


def test_cli_os_errors_are_one_line(qname: str) -> None:
    path = h.segment_path(qname)
    path.mkdir()
    try:
        out = cli("stats", qname)
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    finally:
        path.rmdir()


# --------------------------------------------------------------------------------------
# Out of file descriptors
# --------------------------------------------------------------------------------------

OPEN_UNTIL_EMFILE = textwrap.dedent(
    """
    import errno, resource, sys, shmq
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (48, hard))
    handles = []
    try:
        for i in range(1000):
            handles.append(shmq.Queue(f"{sys.argv[1]}-{i}", create=True, capacity=4096))
        print("never ran out")
    except shmq.TooManyOpenFilesError as e:
        assert isinstance(e, OSError) and e.errno == errno.EMFILE, (type(e), e.errno)
        print(len(handles) > 0, str(e))
    for q in handles:
        q.close()
    with shmq.Queue(f"{sys.argv[1]}-after", create=True, capacity=4096):  # works again
        pass
    """
)


def test_running_out_of_file_descriptors_says_what_to_do(qname: str) -> None:
    # Was: a bare OSError "Too many open files (os error 24)", no errno, not a ShmqError.
    out = subprocess.run([sys.executable, "-c", OPEN_UNTIL_EMFILE, qname], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("True cannot open "), out.stdout
    assert "too many open files" in out.stdout and "ulimit -n" in out.stdout and "close the handles" in out.stdout


def test_too_many_open_files_error_pickles() -> None:
    e = shmq.TooManyOpenFilesError("out of descriptors", errno.ENFILE)
    again = pickle.loads(pickle.dumps(e))
    assert (type(again), again.errno, str(again)) == (shmq.TooManyOpenFilesError, errno.ENFILE, "out of descriptors")


# --------------------------------------------------------------------------------------
# Every error is a ShmqError (argument TypeErrors excepted), with its stdlib base
# --------------------------------------------------------------------------------------


def test_every_error_is_a_shmq_error_with_its_stdlib_base() -> None:
    bases: dict[type[BaseException], tuple[type[BaseException], ...]] = {
        shmq.InvalidArgumentError: (ValueError,),
        shmq.MismatchError: (shmq.InvalidArgumentError, ValueError),
        shmq.InvalidNameError: (shmq.InvalidArgumentError, ValueError),
        shmq.SharedMemoryError: (OSError,),
        shmq.SharedMemoryFullError: (shmq.SharedMemoryError, OSError),
        shmq.TooManyOpenFilesError: (shmq.SharedMemoryError, OSError),
        shmq.ViewReleasedError: (ValueError,),
        shmq.QueueClosedError: (ValueError,),
        shmq.MessageTooLargeError: (ValueError,),
        shmq.CodecError: (TypeError,),
        shmq.WrongKindError: (TypeError,),
        shmq.QueueNotFoundError: (FileNotFoundError,),
        shmq.QueueExistsError: (FileExistsError,),
        shmq.QueuePermissionError: (PermissionError,),
        shmq.Full: (stdqueue.Full,),
        shmq.Empty: (stdqueue.Empty,),
        shmq.WouldDeadlockError: (RuntimeError,),
    }
    for cls, expected in bases.items():
        assert issubclass(cls, shmq.ShmqError), cls
        for base in expected:
            assert issubclass(cls, base), (cls, base)
    errors = {n for n in shmq.__all__ if n.endswith("Error") or n in ("Full", "Empty", "Lagged")}
    assert all(issubclass(getattr(shmq, n), shmq.ShmqError) for n in errors)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda n: shmq.Queue(n, capacity="lots"), "capacity"),
        (lambda n: shmq.Queue(n, capacity=0), "capacity"),
        (lambda n: shmq.Queue(n, max_processes=0), "max_processes"),
        (lambda n: shmq.Queue(n, mode=0o1000), "mode"),
        (lambda n: shmq.Queue(n, codec="nope"), "codec"),
        (lambda n: shmq.Queue(create=False), "create=False"),
        (lambda n: shmq.Broadcast(n, policy="drop"), "policy"),
        (lambda n: shmq.Queue(n, trusted_owners=["no-such-user-bad-inputs"]), "trusted_owners"),
        (lambda n: shmq.parse_size("0"), "capacity"),
        (lambda n: shmq.codec_id(3), "codec id"),
        (lambda n: shmq.gc(float("nan")), "init_grace"),
    ],
)
def test_bad_values_are_invalid_argument_errors(qname: str, call: Callable[[str], Any], argument: str) -> None:
    # Was: bare ValueErrors (not ShmqErrors).
    with pytest.raises(shmq.InvalidArgumentError, match=argument):
        call(qname)
    assert qname not in shmq.list_queues()  # the checks come before anything is created


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda n: shmq.Queue(n, maxsize="3"), "maxsize"),
        (lambda n: shmq.Queue(n, capacity=1.5), "capacity"),
        (lambda n: shmq.Queue(n, mode="600"), "mode"),  # was: a ValueError
        (lambda n: shmq.Queue(n, max_processes="8"), "max_processes"),  # was: a ValueError
        (lambda n: shmq.Queue(n, codec=1.0), "codec"),
        (lambda n: shmq.Broadcast(n, policy=1), "policy"),  # was: a ValueError
        (lambda n: shmq.gc("1"), "init_grace"),
    ],
)
def test_wrong_types_are_type_errors_naming_the_argument(qname: str, call: Callable[[str], Any], argument: str) -> None:
    with pytest.raises(TypeError, match=f"^{argument} must be "):
        call(qname)
    assert qname not in shmq.list_queues()


def test_states_shmq_refuses_are_shmq_errors(make_queue: MakeQueue, make_broadcast: Callable[..., shmq.Broadcast]) -> None:
    # Was: bare ValueErrors.
    q = make_queue()
    with pytest.raises(shmq.InvalidArgumentError, match=r"join_thread\(\) may only be called after close\(\)"):
        q.join_thread()
    lag = make_broadcast(policy="lag")
    with lag.subscribe() as sub, pytest.raises(shmq.InvalidArgumentError, match="copy=False needs"):
        sub.get(copy=False)
    block = make_broadcast()
    with block.subscribe() as sub:
        block.publish(b"view", codec="raw")
        view = sub.get(copy=False)
        block.publish(b"next", codec="raw")
        assert sub.get() == b"next"  # releases the view
        with pytest.raises(shmq.ViewReleasedError, match="released by a later read"):
            bytes(view)  # type: ignore[call-overload]
