"""Process groups for :meth:`shmq.compat.vllm.MessageQueue.create_from_process_group`: a torch
``ProcessGroup`` or a duck-typed group, and the same-node check."""

from __future__ import annotations

import sys
from typing import Any

from ... import Queue


def _torch_process_group_class() -> Any:
    """``torch.distributed.ProcessGroup``, or ``None`` when torch is not installed (it is
    never imported for a group that is not one: a duck-typed group needs no torch)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    return getattr(dist, "ProcessGroup", None)


class _Group:
    """The collectives ``create_from_process_group`` needs, over a torch ``ProcessGroup`` or a
    duck-typed group with vLLM's ``StatelessProcessGroup`` surface."""

    def __init__(self, pg: Any) -> None:
        self.pg = pg
        pg_class = _torch_process_group_class()
        self.torch = pg_class is not None and isinstance(pg, pg_class)
        if self.torch:
            dist = sys.modules["torch.distributed"]  # imported: pg is one of its groups
            self.dist: Any = dist
            self.rank = int(dist.get_rank(pg))
            self.world_size = int(dist.get_world_size(pg))
            self.global_ranks = list(dist.get_process_group_ranks(pg))
        else:
            missing = [a for a in ("rank", "world_size", "broadcast_obj") if not hasattr(pg, a)]
            if missing:
                raise TypeError(
                    "pg must be a torch.distributed.ProcessGroup or have rank, world_size and"
                    f" broadcast_obj(obj, src) as vLLM's StatelessProcessGroup; {type(pg).__name__} has no"
                    f" {', '.join(missing)}"
                )
            self.rank = int(pg.rank)
            self.world_size = int(pg.world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"the group's rank {self.rank} is not in 0..{self.world_size - 1}")

    def broadcast(self, obj: Any, src: int) -> Any:
        """``obj`` from group rank ``src`` to every rank (each returns it)."""
        if self.torch:
            box = [obj]
            self.dist.broadcast_object_list(box, src=self.global_ranks[src], group=self.pg)
            return box[0]
        return self.pg.broadcast_obj(obj if self.rank == src else None, src)

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, by rank."""
        if self.torch:
            out: list[Any] = [None] * self.world_size
            self.dist.all_gather_object(out, obj, group=self.pg)
            return out
        gather = getattr(self.pg, "all_gather_obj", None)
        if callable(gather):
            return list(gather(obj))
        return [self.broadcast(obj, r) for r in range(self.world_size)]  # broadcast_obj alone


def _same_node_as(pg: Any, group: _Group, source_rank: int) -> list[bool]:
    """For each rank of the group, whether it runs on ``source_rank``'s node."""
    try:
        from vllm.distributed.parallel_state import in_the_same_node_as  # type: ignore[import-not-found]
    except ImportError:
        check = getattr(pg, "in_the_same_node_as", None)
        if not group.torch and callable(check):
            status = list(check(source_rank=source_rank))
        else:
            status = _probe_same_node(group, source_rank)
    else:
        status = list(in_the_same_node_as(pg, source_rank=source_rank))
    if len(status) != group.world_size:
        raise ValueError(f"the same-node check returned {len(status)} results for {group.world_size} ranks")
    return [bool(s) for s in status]


def _probe_same_node(group: _Group, source_rank: int) -> list[bool]:
    """A rank is on the source's node if it can open the queue the source created under a
    random name (the name is never reused, so a same-named segment elsewhere cannot exist)."""
    probe = Queue(None, capacity=4096) if group.rank == source_rank else None
    try:
        name = group.broadcast(probe.name if probe is not None else None, source_rank)
        if probe is not None:
            here = True
        else:
            try:
                Queue(name, create=False).close()
                here = True
            except (FileNotFoundError, PermissionError):
                here = False
        return [bool(h) for h in group.all_gather(here)]  # everyone tried before the probe goes
    finally:
        if probe is not None:
            probe.close()
