"""What queues and broadcasts share: sizes, codecs, names, the checks of their common
arguments, and the registry of open handles (closed at exit, re-attached after fork).

Imports only the native module and the standard library: :mod:`shmq._queue` and
:mod:`shmq._broadcast` build on it, and :mod:`shmq` re-exports the public names.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterable
import os
import re
import secrets
import signal
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol, TypedDict, TypeGuard, Union

from ._shmq import CODEC_MSGPACK, CODEC_PICKLE, CODEC_RAW, FIRST_USER_CODEC
from ._shmq import register_codec as _register_codec
from ._shmq import validate_name as _validate_name

# The type of the objects a queue or broadcast carries (``shmq.Queue[int]``). Its default
# keeps a bare ``shmq.Queue`` meaning ``Queue[Any]``, as before the classes were generic,
# even under ``mypy --strict``; typing.TypeVar takes a default from Python 3.13 on only.
if TYPE_CHECKING:
    from typing_extensions import TypeVar

    T = TypeVar("T", default=Any)
else:
    from typing import TypeVar

    T = TypeVar("T")

#: Default ring size: 4 MiB (the largest message is 16 bytes less).
DEFAULT_CAPACITY = 4 * 1024 * 1024
#: Default permission bits of a segment: this user only.
DEFAULT_MODE = 0o600
#: Default bound on the processes attached at once.
DEFAULT_MAX_PROCESSES = 128
#: Seconds a handle on its way to another process (pickled, or inherited by a forked child
#: that has not used it yet) keeps its ring alive, whatever the sender does meanwhile.
IN_FLIGHT_GRACE = 60.0

Capacity = Union[int, str]
"""Ring size: bytes as an int, or a string such as ``"64MiB"`` (see :func:`parse_size`)."""
Codec = Union[Literal["raw", "pickle", "msgpack"], str, int]
"""A built-in codec's name, a name given to :func:`register_codec`, or a codec id."""
BytesLike = Union[bytes, bytearray, memoryview]

_CODECS: dict[str, int] = {"raw": CODEC_RAW, "pickle": CODEC_PICKLE, "msgpack": CODEC_MSGPACK}
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int and not a bool (``True`` is no size, bound or mode)."""
    return isinstance(value, int) and not isinstance(value, bool)


def parse_size(size: Capacity) -> int:
    """Turns ``4096``, ``"64MiB"``, ``"1.5 GB"`` or ``"512k"`` into a number of bytes."""
    if is_int(size):
        if size <= 0:
            raise ValueError(f"capacity must be positive, got {size}")
        return size
    if not isinstance(size, str):
        raise TypeError(f"capacity must be an int or a string such as '64MiB', not {type(size).__name__}")
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", size)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot parse capacity {size!r}; use e.g. 65536, '64KiB', '64MiB', '1GiB'")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise ValueError(f"capacity must be positive, got {size!r}")
    return value


def codec_id(codec: Codec) -> int:
    """The numeric id of a codec given by name (``"pickle"``, ``"msgpack"``, ``"raw"``) or id."""
    if is_int(codec):
        if codec in _CODECS.values() or FIRST_USER_CODEC <= codec <= 65535:
            return codec
        raise ValueError(f"codec id {codec} is neither built in (0, 1, 2) nor a user id (1001..65535)")
    if isinstance(codec, str):
        try:
            return _CODECS[codec]
        except KeyError:
            raise ValueError(f"unknown codec {codec!r}; choose one of {sorted(_CODECS)} or register one") from None
    raise TypeError(f"codec must be a name or an int id, not {type(codec).__name__}")


def register_codec(
    codec: int, encode: Callable[[Any], BytesLike], decode: Callable[[bytes], Any], *, name: str | None = None
) -> None:
    """Registers a codec under id ``codec`` (1001..65535) for every queue of this process.

    ``encode(obj)`` returns a bytes-like object; ``decode(data: bytes)`` returns the object.
    Every process that receives such messages must register the same codec. With ``name``,
    queues may also be created with ``codec=name``.
    """
    _register_codec(codec, encode, decode)
    if name is not None:
        _CODECS[name] = codec


def full_name(name: str, namespace: str | None = None) -> str:
    """The name a queue has in the system: ``namespace.name`` (or ``name``)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    _validate_name(name)
    if namespace is None:
        return name
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, not {type(namespace).__name__}")
    _validate_name(namespace)
    return f"{namespace}.{name}"


TrustedOwners = Union[Iterable[Union[int, str]], Literal["*"], None]
"""Users (uids or user names) whose segments a handle accepts besides its own; ``"*"``:
anyone's. ``None`` (default): only segments of this process's effective user."""


class AccessArguments(TypedDict):
    """How a handle shares its segment, as the native constructors take it."""

    mode: int
    trusted_owners: list[int] | None
    trust_any_owner: bool


class OpenArguments(AccessArguments):
    """The keyword arguments the native constructors of queues and publishers share."""

    capacity: int
    create: bool | None
    codec: int
    allow_pickle: bool
    persistent: bool
    max_processes: int
    allow_large: bool


def access_arguments(mode: int, trusted_owners: TrustedOwners) -> AccessArguments:
    """Checks ``mode`` and ``trusted_owners`` (user names become uids)."""
    if not is_int(mode) or not 0 <= mode <= 0o777:
        raise ValueError(f"mode must be an int in 0..0o777, got {mode!r}")
    if trusted_owners is None:
        return AccessArguments(mode=mode, trusted_owners=None, trust_any_owner=False)
    if trusted_owners == "*":
        return AccessArguments(mode=mode, trusted_owners=None, trust_any_owner=True)
    if isinstance(trusted_owners, (str, bytes)) or not isinstance(trusted_owners, Iterable):
        raise TypeError(
            "trusted_owners must be an iterable of uids or user names, or '*' for anyone,"
            f" not {trusted_owners!r}"
        )
    uids: list[int] = []
    for owner in trusted_owners:
        if isinstance(owner, str):
            import pwd

            try:
                uids.append(pwd.getpwnam(owner).pw_uid)
            except KeyError:
                raise ValueError(f"trusted_owners: no user named {owner!r}") from None
        elif is_int(owner) and 0 <= owner < 2**32:
            uids.append(owner)
        else:
            raise TypeError(f"trusted_owners: {owner!r} is neither a uid (int) nor a user name")
    return AccessArguments(mode=mode, trusted_owners=uids, trust_any_owner=False)


def access_of(handle: Any) -> tuple[int, TrustedOwners]:
    """``(mode, trusted_owners)`` of an open native handle, to reopen it alike (pickling)."""
    mode, trusted = handle._access
    return mode, ("*" if trusted is None else tuple(trusted))


def open_arguments(
    name: str | None,
    *,
    capacity: Capacity,
    create: bool | None,
    namespace: str | None,
    codec: Codec,
    allow_pickle: bool,
    mode: int,
    persistent: bool,
    max_processes: int,
    allow_large: bool,
    trusted_owners: TrustedOwners = None,
) -> tuple[str, OpenArguments]:
    """Checks the arguments ``Queue`` and ``Broadcast`` share and converts them for the native
    constructor: returns the full name and the keyword arguments. ``name=None`` becomes a
    unique private name (and the segment is then created)."""
    if create is not None and not isinstance(create, bool):
        raise TypeError("create must be None, True or False")
    if name is None:
        if create is False:
            raise ValueError("create=False needs a name to open")
        name = f"anon-{os.getpid()}-{secrets.token_hex(6)}"
        create = True
    access = access_arguments(mode, trusted_owners)
    if not is_int(max_processes) or not 1 <= max_processes <= 4096:
        raise ValueError(f"max_processes must be 1..4096, got {max_processes!r}")
    arguments = OpenArguments(
        capacity=parse_size(capacity),
        create=create,
        mode=access["mode"],
        trusted_owners=access["trusted_owners"],
        trust_any_owner=access["trust_any_owner"],
        codec=codec_id(codec),
        allow_pickle=bool(allow_pickle),
        persistent=bool(persistent),
        max_processes=max_processes,
        allow_large=bool(allow_large),
    )
    return full_name(name, namespace), arguments


# --------------------------------------------------------------------------------------
# Every open handle (queues, broadcasts, subscriptions): closed at exit, re-attached after fork
# --------------------------------------------------------------------------------------


class _Handle(Protocol):
    def close(self) -> None: ...
    def _reattach_after_fork(self) -> None: ...



_live_handles: weakref.WeakSet[_Handle] = weakref.WeakSet()


def register(handle: _Handle) -> None:
    """Closes ``handle`` at exit and re-attaches it in fork children (held weakly)."""
    _live_handles.add(handle)
    _exit_cleanly_on_sigterm()


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (what ``docker stop``, ``kill`` and ``Process.terminate()`` send) kills a
    process without running ``atexit``: its handles would stay attached until someone reaps
    them, and the last process of a queue would leave its segment in /dev/shm. So while the
    handler is the default one, shmq installs one that exits cleanly instead (``SystemExit``
    with status 128 + SIGTERM, the shell's convention for a process killed by it): handles
    close, ``finally`` blocks and ``atexit`` run. A handler of the program's own (installed
    before or after) is never replaced."""
    global _sigterm_checked
    if _sigterm_checked or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_checked = True
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, exit_on_sigterm)


_sigterm_checked = False


def exit_on_sigterm(signum: int, frame: object) -> None:
    """shmq's SIGTERM handler (see :func:`_exit_cleanly_on_sigterm`)."""
    # Restored first: a second SIGTERM while cleaning up kills at once, as before.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(128 + signum)


def _close_all() -> None:
    """Detaches every handle this process still has open (at interpreter exit, and at the
    exit of a ``multiprocessing`` child, which leaves through ``os._exit``)."""
    for handle in list(_live_handles):
        handle.close()


def _after_fork_in_child() -> None:
    # The child attaches to an inherited queue on first use only (a child that never uses
    # it never attaches), and detaches at exit.
    for handle in list(_live_handles):
        handle._reattach_after_fork()
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, _close_all, exitpriority=-100)


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
