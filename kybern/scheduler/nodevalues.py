"""Per-node values kept per pod signature, and the node-sampling helpers of the framework
runtime: `SignedValues` keeps, for each signature of the pods a cycle runs (least recently used
dropped past `SIGNED_VALUES_KEPT`), one value per node of the snapshot's node list (a filter
status, a raw or weighted score) and recomputes only the nodes the snapshot's `ChangeLog`
reports changed since; `Window` records which slice of that list a cycle evaluated so the
score pass can take the same nodes' values out of it; `batch_filter`/`batch_score` adapt
per-node filter and score plugins to whole-list calls; `run_filters` runs the filters over a
node list, each node stopping at its first failure (the one loop both the framework's chunked
search and `filter_each`, the first failure per node as a list, use);
`num_feasible_nodes_to_find` is kube's adaptive sample size."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
SIGNED_VALUES_KEPT = 32  # per-node value lists kept (least recently used dropped)
T = TypeVar("T")


class ChangeLog(Protocol):
    """What a snapshot offers to keep per-node values current (the scheduler's `Cache`)."""

    def node_infos(self) -> list[NodeInfo]: ...

    def changes_since(self, position: int) -> list[NodeInfo] | None: ...

    def change_position(self) -> int: ...


class NodeValues:
    """One value per node of `nodes` (a snapshot's node list) for one signature, current as
    of change-log `position`; `uniform`: whether all values are equal (None: not known yet;
    once False it stays so until the values are computed afresh)."""

    __slots__ = ("nodes", "position", "uniform", "values")

    def __init__(self, nodes: list[NodeInfo], values: list[Any], position: int) -> None:
        self.nodes = nodes
        self.values = values
        self.position = position
        self.uniform: bool | None = None

    def is_uniform(self) -> bool:
        """True when every node has the same value (and there is at least one node)."""
        if self.uniform is None:
            values = self.values
            self.uniform = bool(values) and values.count(values[0]) == len(values)
        return self.uniform


class SignedValues(OrderedDict[Hashable, NodeValues]):
    """The `NodeValues` kept per signature, least recently used first."""

    def __init__(self) -> None:
        super().__init__()
        self._index: tuple[list[NodeInfo], dict[str, int]] | None = None
        self._dirty_memo: (
            tuple[list[NodeInfo], int, int, tuple[list[NodeInfo], list[int]]] | None
        ) = None

    def node_values(
        self, snap: ChangeLog, key: Hashable, compute: Callable[[list[NodeInfo]], list[Any]]
    ) -> list[Any]:
        """`compute(nodes)` for every node of the snapshot, kept under `key` (a signature)
        and recomputed only for the nodes changed since the last call."""
        return self.node_entry(snap, key, compute).values

    def node_entry(
        self, snap: ChangeLog, key: Hashable, compute: Callable[[list[NodeInfo]], list[Any]]
    ) -> NodeValues:
        nodes = snap.node_infos()
        entry = self.get(key)
        if entry is not None and entry.nodes is nodes:
            end = snap.change_position()
            dirty = self._dirty(snap, nodes, entry.position, end)
            if dirty is not None:
                entry.position = end
                if dirty[0]:
                    values, new = entry.values, compute(dirty[0])
                    if entry.uniform and new.count(values[0]) != len(new):
                        entry.uniform = False
                    for i, v in zip(dirty[1], new, strict=True):
                        values[i] = v
                self.move_to_end(key)
                return entry
        position = snap.change_position()
        entry = self[key] = NodeValues(nodes, compute(nodes), position)
        self.move_to_end(key)
        if len(self) > SIGNED_VALUES_KEPT:
            self.popitem(last=False)
        return entry

    def _dirty(
        self, snap: ChangeLog, nodes: list[NodeInfo], position: int, end: int
    ) -> tuple[list[NodeInfo], list[int]] | None:
        """The nodes of `nodes` changed between change-log positions `position` and `end`
        (once each, in order of first change) and their indexes; None when the log no
        longer reaches back to `position`. The last answer is reused: the values kept for
        a pod's signatures are usually all at the same position."""
        memo = self._dirty_memo
        if memo is not None and memo[0] is nodes and memo[1] == position and memo[2] == end:
            return memo[3]
        if position == end:
            return [], []
        changed = snap.changes_since(position)
        if changed is None:
            return None
        index = self._node_index(nodes)
        dirty: list[NodeInfo] = []
        where: list[int] = []
        for n in dict.fromkeys(changed):
            i = index.get(n.name)
            if i is not None and nodes[i] is n:
                dirty.append(n)
                where.append(i)
        self._dirty_memo = (nodes, position, end, (dirty, where))
        return dirty, where

    def _node_index(self, nodes: list[NodeInfo]) -> dict[str, int]:
        if self._index is None or self._index[0] is not nodes:
            self._index = (nodes, {n.name: i for i, n in enumerate(nodes)})
        return self._index[1]


class Window:
    """The nodes a cycle evaluated: `count` positions of the node list from `start` (wrapping),
    and which of them were feasible (`mask`, None when all were)."""

    __slots__ = ("count", "feasible", "mask", "nodes", "start")

    def __init__(
        self,
        nodes: list[NodeInfo],
        start: int,
        count: int,
        mask: list[bool] | None,
        feasible: list[NodeInfo],
    ) -> None:
        self.nodes = nodes
        self.start = start
        self.count = count
        self.mask = mask
        self.feasible = feasible

    def take(self, values: list[T]) -> list[T]:
        """The values of the feasible nodes, in evaluation order (a new list)."""
        return take(values, self.start, self.count, self.mask)


def take(values: list[T], start: int, count: int, mask: Sequence[bool] | None) -> list[T]:
    end = start + count
    n = len(values)
    out = values[start:end] if end <= n else values[start:] + values[: end - n]
    return out if mask is None else list(itertools.compress(out, mask))


BatchFilter = Callable[[fw.CycleState, PodInfo, list[NodeInfo]], dict[int, fw.Status]]
BatchScore = Callable[[fw.CycleState, PodInfo, list[NodeInfo]], list[int]]


def batch_filter(pl: fw.FilterPlugin) -> BatchFilter:
    if isinstance(pl, fw.BatchFilterPlugin):
        return pl.filter_nodes
    f = pl.filter

    def filter_nodes(
        state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> dict[int, fw.Status]:
        out: dict[int, fw.Status] = {}
        for i, n in enumerate(nodes):
            st = f(state, pod, n)
            if st is not None and st.code != fw.Code.SUCCESS:
                out[i] = st
        return out

    return filter_nodes


def batch_score(pl: fw.ScorePlugin) -> BatchScore:
    if isinstance(pl, fw.BatchScorePlugin):
        return pl.score_nodes
    f = pl.score

    def score_nodes(state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        return [f(state, pod, n) for n in nodes]

    return score_nodes


def run_filters(
    state: fw.CycleState,
    pod: PodInfo,
    nodes: list[NodeInfo],
    filters: list[tuple[str, BatchFilter]],
) -> tuple[list[NodeInfo], list[int] | None, list[tuple[int, fw.Status]]]:
    """The filters over `nodes` in order, each node stopping at its first failure: (the nodes
    that passed every filter, their indexes in `nodes` (None: all of them, `nodes` itself is
    returned), and each failed node's index with its status, the failing plugin's name set,
    grouped by filter in filter order). A filter's `Error` status raises RuntimeError."""
    alive = nodes
    where: list[int] | None = None
    failures: list[tuple[int, fw.Status]] = []
    for name, fn in filters:
        if not alive:
            break
        failed = fn(state, pod, alive)
        if not failed:
            continue
        for i, fst in failed.items():
            if fst.code == fw.Code.ERROR:
                raise RuntimeError(f"running Filter plugin {name!r}: {fst.message}")
            failures.append(
                (
                    i if where is None else where[i],
                    fst if fst.plugin == name else fst.with_plugin(name),
                )
            )
        keep = [i for i in range(len(alive)) if i not in failed]
        alive = [alive[i] for i in keep]
        where = keep if where is None else [where[i] for i in keep]
    return alive, where, failures


def filter_each(
    state: fw.CycleState,
    pod: PodInfo,
    nodes: list[NodeInfo],
    filters: list[tuple[str, BatchFilter]],
) -> list[fw.Status | None]:
    """The first failing filter's status per node (None: feasible)."""
    out: list[fw.Status | None] = [None] * len(nodes)
    for i, st in run_filters(state, pod, nodes, filters)[2]:
        out[i] = st
    return out


def num_feasible_nodes_to_find(percentage: int, num_all_nodes: int) -> int:
    """kube's adaptive sample size: all nodes below 100, else 50% - n/125 (at least 5%), and
    never fewer than 100."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    if percentage <= 0:
        percentage = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    return max(num_all_nodes * min(percentage, 100) // 100, MIN_FEASIBLE_NODES_TO_FIND)
