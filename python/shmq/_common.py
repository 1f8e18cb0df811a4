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
import reprlib
import secrets
import signal
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Generic, Literal, Protocol, TypedDict, TypeGuard, Union

from ._errors import InvalidArgumentError, MismatchError
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
V = TypeVar("V")

#: Default ring size: 4 MiB (the largest message is 16 bytes less).
DEFAULT_CAPACITY = 4 * 1024 * 1024
#: Default permission bits of a segment: this user only.
DEFAULT_MODE = 0o600
#: Default bound on the processes attached at once.
DEFAULT_MAX_PROCESSES = 128
#: Seconds a handle on its way to another process (pickled, or inherited by a forked child
#: that has not used it yet) keeps its ring alive, whatever the sender does meanwhile.
IN_FLIGHT_GRACE = 60.0
#: Largest ring (1 TiB), as the Rust crate's ``shmq_core::layout::MAX_CAPACITY``.
MAX_CAPACITY = 1 << 40
#: Rings are at least this large and a multiple of it (the crate's page size).
RING_QUANTUM = 4096
#: Largest process table, as the crate's ``shmq_core::layout::MAX_SLOTS``.
MAX_PROCESSES = 4096
#: Largest ``maxsize`` (the bound is a ``u64`` in shared memory).
MAX_MAXSIZE = 2**64 - 1

Capacity = Union[int, str]
"""Ring size: bytes as an int, or a string such as ``"64MiB"`` (see :func:`parse_size`)."""
Codec = Union[Literal["raw", "pickle", "msgpack"], str, int]
"""A built-in codec's name, a name given to :func:`register_codec`, or a codec id."""
BytesLike = Union[bytes, bytearray, memoryview]

_BUILTIN_CODECS: dict[str, int] = {"raw": CODEC_RAW, "pickle": CODEC_PICKLE, "msgpack": CODEC_MSGPACK}
_CODECS: dict[str, int] = dict(_BUILTIN_CODECS)
# The functions registered under each user codec id (to refuse a conflicting registration).
_USER_CODECS: dict[int, tuple[Callable[[Any], BytesLike], Callable[[bytes], Any]]] = {}
# Size suffixes, lower-cased: decimal (k, kB, ...) and binary (KiB, and Ki as in Kubernetes).
_UNITS = {"": 1, "b": 1}
for _i, _prefix in enumerate("kmgt", start=1):
    _UNITS.update({_prefix: 1000**_i, f"{_prefix}b": 1000**_i, f"{_prefix}i": 1024**_i, f"{_prefix}ib": 1024**_i})


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int and not a bool (``True`` is no size, bound or mode)."""
    return isinstance(value, int) and not isinstance(value, bool)


def short(value: object) -> str:
    """``repr(value)``, cut short (for messages)."""
    return reprlib.repr(value)


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool; a ``TypeError`` naming the argument otherwise (``"no"`` is
    truthy: taking it as ``True`` would silently do the opposite of what was meant)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__} {short(value)}")
    return value


class WhenCreating(Generic[V]):
    """A setting used if the call creates the segment, and not checked against an existing
    one: the default of ``maxsize``, ``capacity`` and ``policy`` (an explicit value that
    differs from the existing segment's is a :class:`MismatchError`)."""

    __slots__ = ("value",)

    def __init__(self, value: V) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def check_setting(handle: Any, kind: str, setting: str, requested: Any, existing: Any, shown: str = "") -> None:
    """Closes ``handle`` and raises :class:`MismatchError` if the existing segment's
    ``setting`` is not the one asked for explicitly."""
    if requested == existing:
        return
    name = handle.name
    handle.close()
    raise MismatchError(
        f"{kind} {name!r} exists with {setting}={existing!r}, not {setting}={shown or repr(requested)}:"
        f" opening does not change it; leave {setting} out to open the {kind} as it is, or use another name",
        setting,
        requested,
        existing,
    )


def parse_size(size: Capacity) -> int:
    """Turns ``4096``, ``"64MiB"``, ``"1.5 GB"``, ``"512k"`` or ``"1TiB"`` into a number of
    bytes. Units: ``k``/``kB``, ``M``/``MB``, ``G``/``GB``, ``T``/``TB`` (powers of 1000) and
    ``KiB``, ``MiB``, ``GiB``, ``TiB`` (or ``Ki``, ..., powers of 1024), in any case."""
    if is_int(size):
        if size <= 0:
            raise InvalidArgumentError(f"capacity must be positive, got {size}")
        return size
    if not isinstance(size, str):
        raise TypeError(f"capacity must be an int or a string such as '64MiB', not {type(size).__name__}")
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", size)
    if not m or m.group(2).lower() not in _UNITS:
        raise InvalidArgumentError(
            f"cannot parse capacity {size!r}; use bytes or a size such as '64KiB', '64MiB', '1GiB', '1TiB', '500MB'"
        )
    number, unit = m.group(1), _UNITS[m.group(2).lower()]
    # Exact for integers (float would round "1099511627777" or "3.3TB").
    whole, _, frac = number.partition(".")
    scale: int = 10 ** len(frac)
    value = int(whole) * unit + int(frac or "0") * unit // scale
    if value <= 0:
        raise InvalidArgumentError(f"capacity must be positive, got {size!r}")
    return value


def ring_size(capacity: int) -> int:
    """The ring a queue created with ``capacity`` bytes gets: at least 4096 bytes, rounded up
    to a multiple of 4096."""
    return -(-max(capacity, RING_QUANTUM) // RING_QUANTUM) * RING_QUANTUM


def codec_id(codec: Codec) -> int:
    """The numeric id of a codec given by name (``"pickle"``, ``"msgpack"``, ``"raw"``) or id."""
    if is_int(codec):
        if codec in _BUILTIN_CODECS.values() or FIRST_USER_CODEC <= codec <= 65535:
            return codec
        raise InvalidArgumentError(f"codec id {codec} is neither built in (0, 1, 2) nor a user id (1001..65535)")
    if isinstance(codec, str):
        try:
            return _CODECS[codec]
        except KeyError:
            raise InvalidArgumentError(
                f"unknown codec {codec!r}; choose one of {sorted(_CODECS)} or register one"
            ) from None
    raise TypeError(f"codec must be a name or an int id, not {type(codec).__name__}")


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """Whether ``b`` is ``a``, or its new definition after a reload of the module defining
    it (a function with an importable name: not a lambda, nor one defined in a function)."""
    if a is b:
        return True
    name = getattr(a, "__qualname__", None)
    return (
        isinstance(name, str)
        and "<" not in name
        and name == getattr(b, "__qualname__", None)
        and getattr(a, "__module__", None) == getattr(b, "__module__", None)
    )


def register_codec(
    codec: int, encode: Callable[[Any], BytesLike], decode: Callable[[bytes], Any], *, name: str | None = None
) -> None:
    """Registers a codec under id ``codec`` (1001..65535) for every queue of this process.

    ``encode(obj)`` returns a bytes-like object; ``decode(data: bytes)`` returns the object.
    Every process that receives such messages must register the same codec. With ``name``,
    queues may also be created with ``codec=name`` (and ``put(..., codec=name)``).

    Registering the same functions again is allowed (a module reloaded, or imported again in
    a ``spawn`` child, registers its codec again); an id or a name already registered with
    other functions, and a built-in name (``"raw"``, ``"pickle"``, ``"msgpack"``), raise
    :class:`InvalidArgumentError`.
    """
    if not is_int(codec):
        raise TypeError(f"codec must be an int id (1001..65535), not {type(codec).__name__}")
    if not FIRST_USER_CODEC <= codec <= 65535:
        raise InvalidArgumentError(f"user codec ids are {FIRST_USER_CODEC}..65535, got {codec}")
    if not callable(encode) or not callable(decode):
        raise TypeError("encode and decode must be callable")
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if name in _BUILTIN_CODECS:
            raise InvalidArgumentError(f"name {name!r} is a built-in codec's; register yours under another name")
        if _CODECS.get(name, codec) != codec:
            raise InvalidArgumentError(
                f"name {name!r} is already registered for codec {_CODECS[name]}; choose another name"
            )
    old = _USER_CODECS.get(codec)
    if old is not None and not (_same_function(old[0], encode) and _same_function(old[1], decode)):
        raise InvalidArgumentError(
            f"codec {codec} is already registered with other functions ({_describe(old[0])}, {_describe(old[1])});"
            " choose another id (messages already sent with it decode with the registered codec)"
        )
    _register_codec(codec, encode, decode)
    _USER_CODECS[codec] = (encode, decode)
    if name is not None:
        _CODECS[name] = codec


def _describe(f: Callable[..., Any]) -> str:
    return f"{getattr(f, '__module__', None) or '?'}.{getattr(f, '__qualname__', None) or type(f).__name__}"


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
    if not is_int(mode):
        raise TypeError(f"mode must be an int such as 0o600, not {type(mode).__name__} {short(mode)}")
    if not 0 <= mode <= 0o777:
        raise InvalidArgumentError(f"mode must be 0..0o777 (permission bits such as 0o600), got {mode:#o}")
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
                raise InvalidArgumentError(f"trusted_owners: no user named {owner!r}") from None
        elif is_int(owner) and 0 <= owner < 2**32:
            uids.append(owner)
        else:
            raise TypeError(f"trusted_owners: {owner!r} is neither a uid (int) nor a user name")
    return AccessArguments(mode=mode, trusted_owners=uids, trust_any_owner=False)


def access_of(handle: Any) -> tuple[int, TrustedOwners]:
    """``(mode, trusted_owners)`` of an open native handle, to reopen it alike (pickling)."""
    mode, trusted = handle._access
    return mode, ("*" if trusted is None else tuple(trusted))


class _Reopenable(Protocol):
    @property
    def name(self) -> str: ...

    def close(self) -> None: ...
    def _keep_alive(self, grace: float) -> None: ...
    def _reopen_arguments(self) -> dict[str, Any]: ...


H = TypeVar("H", bound=_Reopenable)


class HandleMixin:
    """What every handle class (``Queue``, ``Broadcast``, ``Subscriber``) does alike: a
    context manager that closes it, and pickling by name."""

    __slots__ = ()

    def __enter__(self: H) -> H:
        return self

    def __exit__(self: _Reopenable, *exc: object) -> None:
        self.close()

    def __reduce__(self: _Reopenable) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        # The handle travels by name: the receiving process attaches to the same ring. On its
        # way there the ring must survive this process closing its handle first (the
        # multiprocessing idiom): it is in flight until it arrives (or for the grace).
        self._keep_alive(IN_FLIGHT_GRACE)
        return (reopen_handle, (type(self), self.name, self._reopen_arguments()))


def reopen_handle(cls: Callable[..., Any], name: str, arguments: dict[str, Any]) -> Any:
    """Unpickles a handle: opens ``name`` as its sender had it open, then says it arrived."""
    handle = cls(name, **arguments)
    handle._arrived()
    return handle


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
        raise TypeError(f"create must be None, True or False, not {type(create).__name__} {short(create)}")
    if name is None:
        if create is False:
            raise InvalidArgumentError("create=False needs a name to open")
        name = f"anon-{os.getpid()}-{secrets.token_hex(6)}"
        create = True
    access = access_arguments(mode, trusted_owners)
    if not is_int(max_processes):
        raise TypeError(f"max_processes must be an int, not {type(max_processes).__name__} {short(max_processes)}")
    if not 1 <= max_processes <= MAX_PROCESSES:
        raise InvalidArgumentError(f"max_processes must be 1..{MAX_PROCESSES}, got {max_processes}")
    size = parse_size(capacity)
    if size > MAX_CAPACITY:
        raise InvalidArgumentError(f"capacity must be at most 1 TiB ({MAX_CAPACITY} bytes), got {short(capacity)}")
    arguments = OpenArguments(
        capacity=size,
        create=create,
        mode=access["mode"],
        trusted_owners=access["trusted_owners"],
        trust_any_owner=access["trust_any_owner"],
        codec=codec_id(codec),
        allow_pickle=check_bool("allow_pickle", allow_pickle),
        persistent=check_bool("persistent", persistent),
        max_processes=max_processes,
        allow_large=check_bool("allow_large", allow_large),
    )
    return full_name(name, namespace), arguments


# --------------------------------------------------------------------------------------
# Every open handle (queues, broadcasts, subscriptions): closed at exit, re-attached after fork
# --------------------------------------------------------------------------------------


class _Handle(Protocol):
    def close(self) -> None: ...
    def _reattach_after_fork(self) -> None: ...
    def _keep_alive(self, grace: float) -> None: ...


_live_handles: weakref.WeakSet[_Handle] = weakref.WeakSet()


def register(handle: _Handle) -> None:
    """Closes ``handle`` at exit and re-attaches it in fork children (held weakly)."""
    _live_handles.add(handle)
    _exit_cleanly_on_sigterm()
    _close_at_multiprocessing_exit()


class _MpHook:
    """What ``multiprocessing.util.register_after_fork`` keys its hook on (held weakly)."""


_MP_HOOK = _MpHook()
_mp_exit_registered_in = 0  # the pid whose multiprocessing finalizers close our handles


def _close_at_multiprocessing_exit() -> None:
    # A multiprocessing child leaves through os._exit (fork and forkserver start methods):
    # atexit does not run there, multiprocessing's own finalizers do. The fork start method
    # clears them in the child after our at-fork hook ran, so the hook is also registered
    # with multiprocessing's after-fork hooks, which run after that.
    global _mp_exit_registered_in
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None or _mp_exit_registered_in == os.getpid():
        return
    _mp_exit_registered_in = os.getpid()
    mp_util.Finalize(None, _close_all, exitpriority=-100)
    mp_util.register_after_fork(_MP_HOOK, _mp_after_fork)


def _mp_after_fork(_: object) -> None:
    global _mp_exit_registered_in
    _mp_exit_registered_in = 0
    _close_at_multiprocessing_exit()


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


def _before_fork() -> None:
    # The child's copy of each handle is in flight until the child attaches (on first use)
    # or closes it: if this process closes its own first, the queue stays for the child.
    for handle in list(_live_handles):
        handle._keep_alive(IN_FLIGHT_GRACE)


def _after_fork_in_child() -> None:
    # The child attaches to an inherited queue on first use only (a child that never uses
    # it never attaches), and detaches at exit.
    for handle in list(_live_handles):
        handle._reattach_after_fork()
    global _mp_exit_registered_in
    _mp_exit_registered_in = 0
    _close_at_multiprocessing_exit()


atexit.register(_close_all)
os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
