"""``shmq`` command line: list, inspect, remove and garbage-collect queues and broadcasts.

    shmq ls                 every queue and broadcast in /dev/shm, with its kind and size
    shmq stats NAME         counters of one (attaches briefly to read them)
    shmq gc [--grace S]     remove those whose attached processes are all dead
    shmq rm NAME...         remove names now (attached processes keep using them)

Also ``python -m shmq ...``. Exit status: 0 on success, 1 when a command fails (one line on
stderr saying why), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
from typing import Any

import shmq


def _open(name: str) -> shmq.Queue | shmq.Broadcast:
    try:
        return shmq.Queue(name, create=False)
    except shmq.WrongKindError:
        return shmq.Broadcast(name, create=False)


def _describe(name: str) -> dict[str, Any]:
    size = os.stat(f"/dev/shm/{shmq.SEGMENT_PREFIX}{name}").st_size
    try:
        with _open(name) as h:
            kind = "broadcast" if isinstance(h, shmq.Broadcast) else "queue"
            s = h.stats()
            # Minus ourselves: we attached to look.
            return {"name": name, "kind": kind, "bytes": size, "attached": max(s.attached - 1, 0)}
    except shmq.ShmqError as e:
        return {"name": name, "kind": f"? ({type(e).__name__})", "bytes": size, "attached": "?"}


def cmd_ls(_: argparse.Namespace) -> int:
    rows = [_describe(n) for n in shmq.list_queues()]
    if not rows:
        print("no shmq queue or broadcast in /dev/shm")
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'NAME':<{width}}  {'KIND':<10} {'SIZE':>12}  ATTACHED")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['kind']:<10} {r['bytes']:>12,}  {r['attached']}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args.name) as h:
        s = h.stats()
        fields: dict[str, Any] = s._asdict()
        subscribers = fields.pop("subscribers", None)
        fields["attached"] = max(fields["attached"] - 1, 0)  # not counting this command
        print(f"{type(h).__name__.lower()} {h.name!r}")
        for k, v in fields.items():
            print(f"  {k:<12} {v:,}" if isinstance(v, int) else f"  {k:<12} {v}")
        for sub in subscribers or []:
            print(
                f"  subscriber pid {sub.pid}: position {sub.position:,}, behind by "
                f"{sub.lag_messages:,} messages ({sub.lag_bytes:,} bytes), missed {sub.missed_pending:,}"
            )
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    for name in shmq.gc(args.grace):
        print(f"removed {name}")
    return 0


def _rm(name: str) -> None:
    """Removes the segment of ``name``; raises ``ShmqError``/``OSError`` saying why not."""
    shmq.full_name(name)
    path = f"/dev/shm/{shmq.SEGMENT_PREFIX}{name}"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise shmq.QueueNotFoundError(f"no queue or broadcast named {name!r}") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a file"
        raise shmq.NotASegmentError(f"{path} is {what}, not a shared-memory segment: left alone")
    os.unlink(path)


def cmd_rm(args: argparse.Namespace) -> int:
    status = 0
    for name in args.names:
        try:
            _rm(name)
            print(f"removed {name}")
        except (shmq.ShmqError, OSError) as e:
            print(f"shmq rm: {name}: {_message(e)}", file=sys.stderr)
            status = 1
    return status


def _message(e: BaseException) -> str:
    """One line saying what went wrong (an ``OSError``'s text without its errno prefix)."""
    if isinstance(e, OSError) and not isinstance(e, shmq.ShmqError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _grace(text: str) -> float:
    """``--grace``: a non-negative number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if math.isnan(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number of seconds, not {text!r}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shmq", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ls", help="list queues and broadcasts").set_defaults(func=cmd_ls)
    st = sub.add_parser("stats", help="counters of one queue or broadcast")
    st.add_argument("name")
    st.set_defaults(func=cmd_stats)
    g = sub.add_parser("gc", help="remove those whose attached processes are all dead")
    g.add_argument(
        "--grace", type=_grace, default=60.0, help="seconds before a never-initialised segment counts as dead"
    )
    g.set_defaults(func=cmd_gc)
    rm = sub.add_parser("rm", help="remove names now")
    rm.add_argument("names", nargs="+")
    rm.set_defaults(func=cmd_rm)
    args = p.parse_args(argv)
    try:
        return int(args.func(args))
    except (shmq.ShmqError, OSError) as e:
        print(f"shmq {args.cmd}: {_message(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
