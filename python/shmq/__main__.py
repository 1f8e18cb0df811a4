"""``shmq`` command line: list, inspect, remove and garbage-collect queues and broadcasts.

    shmq ls                 every queue and broadcast in /dev/shm, with its kind and size
    shmq stats NAME         counters of one (attaches briefly to read them)
    shmq gc [--grace S]     remove those whose attached processes are all dead
    shmq rm NAME...         remove names now (attached processes keep using them)

Also ``python -m shmq ...``.
"""

from __future__ import annotations

import argparse
import os
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


def cmd_rm(args: argparse.Namespace) -> int:
    status = 0
    for name in args.names:
        try:
            shmq.full_name(name)
            os.unlink(f"/dev/shm/{shmq.SEGMENT_PREFIX}{name}")
            print(f"removed {name}")
        except (FileNotFoundError, shmq.InvalidNameError) as e:
            print(f"shmq rm: {name}: {e}", file=sys.stderr)
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shmq", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ls", help="list queues and broadcasts").set_defaults(func=cmd_ls)
    st = sub.add_parser("stats", help="counters of one queue or broadcast")
    st.add_argument("name")
    st.set_defaults(func=cmd_stats)
    g = sub.add_parser("gc", help="remove those whose attached processes are all dead")
    g.add_argument("--grace", type=float, default=60.0, help="seconds before a never-initialised segment counts as dead")
    g.set_defaults(func=cmd_gc)
    rm = sub.add_parser("rm", help="remove names now")
    rm.add_argument("names", nargs="+")
    rm.set_defaults(func=cmd_rm)
    args = p.parse_args(argv)
    try:
        return int(args.func(args))
    except shmq.ShmqError as e:
        print(f"shmq {args.cmd}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
