"""``shmq`` command line: list, inspect, remove and garbage-collect queues and broadcasts.

    shmq ls                 every queue and broadcast in /dev/shm, with its kind and size
    shmq stats NAME         counters of one (read-only: looking never attaches)
    shmq gc [--grace S] [--drop-kept-after S]
                            remove what no live process uses any more
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


def _describe(name: str) -> dict[str, Any]:
    try:
        i = shmq.inspect(name)
        kept = "" if i["kept_for"] is None else f" (kept {i['kept_for']:.0f} s)"
        return {"name": name, "kind": i["kind"], "bytes": i["segment_bytes"], "attached": f"{i['live']}{kept}"}
    except (shmq.ShmqError, OSError) as e:
        return {"name": name, "kind": f"? ({type(e).__name__})", "bytes": 0, "attached": "?"}


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
    i = shmq.inspect(args.name)
    print(f"{i['kind']} {args.name!r}")
    fields: dict[str, Any] = dict(i["stats"])
    fields["live"] = i["live"]
    fields["persistent"] = i["persistent"]
    fields["owner"] = i["owner"]
    fields["mode"] = oct(i["mode"])
    if i["kept_for"] is not None:
        fields["kept_for"] = f"{i['kept_for']:.1f} s (its last process left it with messages)"
    for k, v in fields.items():
        print(f"  {k:<12} {v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"  {k:<12} {v}")
    for sub in i["subscribers"]:
        print(
            f"  subscriber pid {sub['pid']}: position {sub['position']:,}, behind by "
            f"{sub['lag_messages']:,} messages ({sub['lag_bytes']:,} bytes), missed {sub['missed_pending']:,}"
        )
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    for name in shmq.gc(args.grace, args.drop_kept_after):
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
    # As Queue.unlink(): processes still attached keep using it; the last frees it.
    if not shmq.remove(name):
        raise shmq.QueueNotFoundError(f"no queue or broadcast named {name!r}")


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
    g.add_argument(
        "--drop-kept-after",
        type=_grace,
        default=None,
        metavar="S",
        help="also remove queues left with messages by their last process more than S seconds ago",
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
