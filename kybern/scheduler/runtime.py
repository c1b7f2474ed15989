"""The framework runtime (kube-scheduler's `frameworkImpl` plus `schedulePod`): instantiates a
profile's plugins from the registry, runs each extension point in profile order with kube's
semantics (Skip at pre-filter/pre-score skips that plugin's filter/score, the first non-success
filter status ends a node's evaluation, scores are normalized then weighted), samples the nodes
to evaluate (`percentageOfNodesToScore`, rotating start index), and picks the best node with a
random tie-break. Everything here is synchronous except the binding-cycle extension points.

Plugins that sign pods (`SignPlugin`) are not re-run on every sampled node: their per-node
results (the filter status, the weighted sum of raw scores) are kept per pod signature
(`nodevalues.SignedValues`), aligned with the snapshot's node list, and recomputed only for
the nodes the snapshot logged as changed (the one a pod was just assumed on, those the
informers touched). A cycle then slices the sample out of those lists and picks the best node
in C-level list operations; a normalized plugin whose kept raw scores are equal on every node
(`UniformNormalizePlugin`) only adds a constant, without a pass over the sample."""

from __future__ import annotations

import itertools
import logging
import operator
import random
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import cast

from kybern.scheduler import framework as fw
from kybern.scheduler import profile as profmod
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo
from kybern.scheduler.nodevalues import (
    BatchFilter,
    BatchScore,
    ChangeLog,
    SignedValues,
    Window,
    batch_filter,
    batch_score,
    filter_each,
    num_feasible_nodes_to_find,
    run_filters,
    take,
)

log = logging.getLogger("kybern.scheduler")

MIN_CHUNK = 16  # nodes filtered per batch call once most of the sample is found
NO_NODES_AVAILABLE = "no nodes available to schedule pods"
FEW_TIES = 8  # select_host finds the n-th best node by index() below this, else in one pass
TIE_PROBES = 4  # random probes select_host tries for a best node before it counts the ties


@dataclass
class ScheduleResult:
    suggested_host: str
    evaluated_nodes: int
    feasible_nodes: int


Normalize = Callable[[fw.CycleState, PodInfo, list[NodeInfo], list[int]], fw.Status | None]


class NoNodesAvailable(Exception):
    def __str__(self) -> str:
        return NO_NODES_AVAILABLE


class Framework:
    """One profile's plugins, ready to run."""

    def __init__(self, profile: profmod.Profile, registry: fw.Registry, handle: fw.Handle) -> None:
        self.profile = profile
        self.handle = handle
        self.plugins: dict[str, fw.Plugin] = {}
        names: list[str] = []
        for point in ("multiPoint", *profmod.POINTS):
            for p in (profile.plugins.get(point) or profmod.PluginSet()).enabled:
                if p.name not in names:
                    names.append(p.name)
        for name in names:
            plugin = registry.factory(name)(profile.plugin_config.get(name) or {}, handle)
            self.plugins[name] = plugin

        def implements(name: str, point: str) -> bool:
            plugin = self.plugins.get(name)
            return plugin is not None and isinstance(plugin, fw.EXTENSION_POINTS[point])

        points, self.weights = profmod.expand(profile, implements)
        self.points = points
        at = self._at
        self.queue_sort = cast(list[fw.QueueSortPlugin], at("queueSort"))
        if len(self.queue_sort) != 1:
            raise ValueError(f"exactly one queue sort plugin is required: {points['queueSort']}")
        self.pre_filter = cast(list[fw.PreFilterPlugin], at("preFilter"))
        self.filter = cast(list[fw.FilterPlugin], at("filter"))
        self.post_filter = cast(list[fw.PostFilterPlugin], at("postFilter"))
        self.pre_score = cast(list[fw.PreScorePlugin], at("preScore"))
        self.score = cast(list[fw.ScorePlugin], at("score"))
        self.reserve = cast(list[fw.ReservePlugin], at("reserve"))
        self.permit = cast(list[fw.PermitPlugin], at("permit"))
        self.pre_bind = cast(list[fw.PreBindPlugin], at("preBind"))
        self.bind = cast(list[fw.BindPlugin], at("bind"))
        self.post_bind = cast(list[fw.PostBindPlugin], at("postBind"))
        if not self.bind:
            raise ValueError("at least one bind plugin is required")
        # the hot paths, resolved once: batch capabilities or per-node fallbacks
        self._filters: list[tuple[str, BatchFilter]] = [
            (pl.name, batch_filter(pl)) for pl in self.filter
        ]
        self._scorers: list[tuple[str, BatchScore, Normalize | None, int]] = [
            (
                pl.name,
                batch_score(pl),
                pl.normalize_score if isinstance(pl, fw.ScoreExtensions) else None,
                self.weights.get(pl.name, 1),
            )
            for pl in self.score
        ]
        self._next_start = 0
        self._rng = random.Random()
        self._signers: dict[str, Callable[[PodInfo], Hashable | None]] = {
            name: pl.sign_pod for name, pl in self.plugins.items() if isinstance(pl, fw.SignPlugin)
        }
        self._signed = SignedValues()
        self._uniform: dict[str, Callable[[fw.CycleState, PodInfo, int], int]] = {
            pl.name: pl.normalize_uniform
            for pl in self.score
            if isinstance(pl, fw.UniformNormalizePlugin) and isinstance(pl, fw.ScoreExtensions)
        }
        self._window: Window | None = None  # what the last find_nodes_that_fit evaluated

    def _at(self, point: str) -> list[fw.Plugin]:
        return [self.plugins[n] for n in self.points[point]]

    # ---- queueing ---------------------------------------------------------------------------

    def less(self, a: fw.QueuedPodInfo, b: fw.QueuedPodInfo) -> bool:
        return self.queue_sort[0].less(a, b)

    def events_to_register(self) -> dict[str, list[fw.ClusterEvent]]:
        """The cluster events each filtering plugin registers (plugins without the extension
        are interested in every event)."""
        out: dict[str, list[fw.ClusterEvent]] = {}
        for name in {*self.points["preFilter"], *self.points["filter"]}:
            plugin = self.plugins[name]
            if isinstance(plugin, fw.EnqueueExtensions):
                out[name] = plugin.events_to_register()
            else:
                out[name] = [fw.ClusterEvent(fw.WILDCARD, fw.ActionType.ALL)]
        return out

    # ---- scheduling cycle -------------------------------------------------------------------

    def run_pre_filter(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> tuple[fw.PreFilterResult | None, fw.Status | None]:
        result: fw.PreFilterResult | None = None
        for pl in self.pre_filter:
            r, st = pl.pre_filter(state, pod, nodes)
            if st is not None and st.code != fw.Code.SUCCESS:
                if st.code == fw.Code.SKIP:
                    state.skip_filter_plugins.add(pl.name)
                    continue
                return None, st.with_plugin(pl.name)
            if r is not None and r.node_names is not None:
                result = r if result is None else result.merge(r)
                if not result.node_names:
                    return result, fw.unresolvable(
                        f"node(s) didn't satisfy plugin(s) [{pl.name}] simultaneously"
                    ).with_plugin(pl.name)
        return result, None

    def run_filter(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> fw.Status | None:
        skip = state.skip_filter_plugins
        for pl in self.filter:
            if skip and pl.name in skip:
                continue
            st = pl.filter(state, pod, node)
            if st is not None and st.code != fw.Code.SUCCESS:
                return st.with_plugin(pl.name) if st.plugin != pl.name else st
        return None

    # ---- per-node values kept per pod signature ---------------------------------------------

    def _signature(self, state: fw.CycleState, pod: PodInfo) -> Hashable | None:
        """The pod's signature over the filters that run for it, or None if one cannot sign."""
        skip = state.skip_filter_plugins
        sig: list[tuple[str, Hashable]] = []
        for name, _ in self._filters:
            if skip and name in skip:
                continue
            signer = self._signers.get(name)
            s = signer(pod) if signer is not None else None
            if s is None:
                return None
            sig.append((name, s))
        return ("filter", tuple(sig))

    def _find_signed(
        self,
        state: fw.CycleState,
        pod: PodInfo,
        snap: ChangeLog,
        key: Hashable,
        diagnosis: fw.Diagnosis,
        to_find: int,
        start: int,
    ) -> list[NodeInfo]:
        """`find_nodes_that_fit` over the kept filter statuses of the pod's signature: the
        same nodes, statuses and next start index, without running the filters again."""
        skip = state.skip_filter_plugins
        filters = [f for f in self._filters if f[0] not in skip] if skip else self._filters
        entry = self._signed.node_entry(snap, key, lambda ns: filter_each(state, pod, ns, filters))
        statuses: list[fw.Status | None] = entry.values
        nodes = snap.node_infos()
        n = len(nodes)
        found = pos = processed = 0
        if entry.is_uniform() and statuses[0] is None:
            found = processed = min(to_find, n)  # every node fits: the first `to_find` do
        while pos < n and found < to_find:
            need = to_find - found
            size = min(max(need, MIN_CHUNK), n - pos)
            chunk = take(statuses, (start + pos) % n, size, None)
            fit = chunk.count(None)
            if fit >= need:
                at = need
                if fit != size:
                    j = -1
                    for _ in range(need):
                        j = chunk.index(None, j + 1)
                    at = j + 1
                processed, found = pos + at, to_find
                break
            found += fit
            pos += size
            processed = pos
        mask: list[bool] | None = None
        if found != processed:
            window = take(statuses, start, processed, None)
            mask = list(map(operator.is_, window, itertools.repeat(None)))
            failed = itertools.compress(
                zip(take(nodes, start, processed, None), window, strict=True),
                map(operator.not_, mask),
            )
            for node, fst in failed:
                if fst is not None:
                    diagnosis.node_to_status[node.name] = fst
                    diagnosis.unschedulable_plugins.add(fst.plugin)
        feasible = take(nodes, start, processed, mask)
        self._next_start = (start + processed) % n
        self._window = Window(nodes, start, processed, mask, feasible)
        return feasible

    def find_nodes_that_fit(
        self,
        state: fw.CycleState,
        pod: PodInfo,
        nodes: list[NodeInfo],
        diagnosis: fw.Diagnosis,
        snapshot: fw.Snapshot | None = None,
    ) -> list[NodeInfo]:
        """Pre-filter, then filter nodes from the rotating start index until enough fit.

        Nodes go through the filters a chunk at a time (plugins with the batch capability
        filter a whole chunk in one call); per node the outcome is the same as running the
        filter plugins in order and stopping at the first failure. With a `snapshot` that logs
        node changes (the cache) and a pod every running filter signs, the statuses come
        from the values kept for that signature."""
        self._window = None
        result, st = self.run_pre_filter(state, pod, nodes)
        if st is not None:
            if st.code == fw.Code.ERROR:
                raise RuntimeError(f"running PreFilter plugin {st.plugin!r}: {st.message}")
            diagnosis.pre_filter_msg = st.message
            diagnosis.unschedulable_plugins.add(st.plugin)
            for n in nodes:
                diagnosis.node_to_status[n.name] = st
            return []
        if result is not None and result.node_names is not None:
            candidates = [n for n in nodes if n.name in result.node_names]
            to_find, start = len(candidates), 0
        else:
            candidates = nodes
            to_find = num_feasible_nodes_to_find(
                self.profile.percentage_of_nodes_to_score, len(nodes)
            )
            start = self._next_start % len(nodes) if nodes else 0
            if (
                nodes
                and snapshot is not None
                and hasattr(snapshot, "changes_since")
                and nodes is snapshot.node_infos()
            ):
                key = self._signature(state, pod)
                if key is not None:
                    return self._find_signed(
                        state, pod, cast(ChangeLog, snapshot), key, diagnosis, to_find, start
                    )
        n_all = len(candidates)
        skip = state.skip_filter_plugins
        filters = [f for f in self._filters if f[0] not in skip] if skip else self._filters
        rotated = candidates[start:] + candidates[:start] if start else candidates
        feasible: list[NodeInfo] = []
        pos = processed = 0
        statuses = diagnosis.node_to_status
        plugins = diagnosis.unschedulable_plugins
        while pos < n_all and len(feasible) < to_find:
            size = min(max(to_find - len(feasible), MIN_CHUNK), n_all - pos)
            chunk = rotated[pos : pos + size]
            alive, where, failures = run_filters(state, pod, chunk, filters)
            for i, fst in failures:
                statuses[chunk[i].name] = fst
                plugins.add(fst.plugin)
            need = to_find - len(feasible)
            if len(alive) >= need:
                processed = pos + (need if where is None else where[need - 1] + 1)
                feasible += alive[:need]
                break
            feasible += alive
            pos += size
            processed = pos
        if candidates is nodes and nodes:
            self._next_start = (start + processed) % len(nodes)
        return feasible

    def run_post_filter(
        self, state: fw.CycleState, pod: PodInfo, statuses: Mapping[str, fw.Status]
    ) -> tuple[fw.PostFilterResult | None, fw.Status]:
        reasons: list[str] = []
        for pl in self.post_filter:
            r, st = pl.post_filter(state, pod, statuses)
            if st is None or st.code == fw.Code.SUCCESS:
                return r, fw.Status()
            if st.code == fw.Code.ERROR:
                return None, st.with_plugin(pl.name)
            reasons.extend(st.reasons)
        return None, fw.Status(fw.Code.UNSCHEDULABLE, *reasons)

    def run_score(
        self,
        state: fw.CycleState,
        pod: PodInfo,
        nodes: list[NodeInfo],
        snapshot: fw.Snapshot | None = None,
    ) -> list[int]:
        """Pre-score, score, normalize and weigh; the total per node, aligned with `nodes`."""
        totals, offset = self._score(state, pod, nodes, snapshot)
        return [t + offset for t in totals] if offset else totals

    @staticmethod
    def _check(name: str, scores: list[int]) -> tuple[int, int]:
        """(min, max) of `scores`, which must be in 0..MAX_NODE_SCORE ((0, 0) when empty)."""
        if not scores:
            return 0, 0
        lo, hi = min(scores), max(scores)
        if lo < fw.MIN_NODE_SCORE or hi > fw.MAX_NODE_SCORE:
            bad = next(v for v in scores if not fw.MIN_NODE_SCORE <= v <= fw.MAX_NODE_SCORE)
            raise RuntimeError(
                f"plugin {name!r} returns an invalid score {bad}, it should in the range "
                f"of [{fw.MIN_NODE_SCORE}, {fw.MAX_NODE_SCORE}] after normalizing"
            )
        return lo, hi

    @staticmethod
    def _add(totals: list[int] | None, scores: list[int], weight: int) -> list[int]:
        if totals is None:
            return [v * weight for v in scores] if weight != 1 else scores
        if weight == 1:
            return [t + v for t, v in zip(totals, scores, strict=True)]
        return [t + v * weight for t, v in zip(totals, scores, strict=True)]

    def _score(
        self,
        state: fw.CycleState,
        pod: PodInfo,
        nodes: list[NodeInfo],
        snapshot: fw.Snapshot | None,
    ) -> tuple[list[int], int]:
        """(totals, offset): the weighted totals are `totals[i] + offset`. A plugin whose
        scores are all equal only adds to the offset (it cannot change the choice). Signed
        plugins' scores come from the values kept per signature when `nodes` is what the last
        `find_nodes_that_fit` returned over `snapshot`."""
        for pre in self.pre_score:
            st = pre.pre_score(state, pod, nodes)
            if st is None or st.code == fw.Code.SUCCESS:
                continue
            if st.code == fw.Code.SKIP:
                state.skip_score_plugins.add(pre.name)
                continue
            raise RuntimeError(f"running PreScore plugin {pre.name!r}: {st.message}")
        window = self._window
        if snapshot is None or window is None or window.feasible is not nodes:
            window = None
        snap = cast(ChangeLog, snapshot)
        totals: list[int] | None = None
        offset = 0
        skip = state.skip_score_plugins
        kept: list[tuple[str, Hashable, int, BatchScore]] = []
        for name, score_nodes, normalize, weight in self._scorers:
            if name in skip:
                continue
            sig: Hashable | None = None
            if window is not None:
                signer = self._signers.get(name)
                sig = signer(pod) if signer is not None else None
            if sig is not None and normalize is None:
                kept.append((name, sig, weight, score_nodes))
                continue
            if window is not None and sig is not None:

                def raw_scores(ns: list[NodeInfo], f: BatchScore = score_nodes) -> list[int]:
                    return f(state, pod, ns)  # unnormalized: normalized over the sample below

                entry = self._signed.node_entry(snap, ("score", name, sig), raw_scores)
                uniform = self._uniform.get(name)
                if uniform is not None and nodes and entry.is_uniform():
                    # every node scores the same: so does every sampled one once normalized
                    lo, _ = self._check(name, [uniform(state, pod, entry.values[0])])
                    offset += lo * weight
                    continue
                scores = window.take(entry.values)
            else:
                scores = score_nodes(state, pod, nodes)
            if normalize is not None:
                st = normalize(state, pod, nodes, scores)
                if st is not None and st.code != fw.Code.SUCCESS:
                    raise RuntimeError(f"normalizing scores of {name!r}: {st.message}")
            lo, hi = self._check(name, scores)
            if scores and lo == hi:
                offset += lo * weight
                continue
            totals = self._add(totals, scores, weight)
        if kept and window is not None:

            def weighted(ns: list[NodeInfo]) -> list[int]:
                out: list[int] | None = None
                for name, _, weight, score_nodes in kept:
                    scores = score_nodes(state, pod, ns)
                    self._check(name, scores)
                    out = self._add(out, scores, weight)
                return out if out is not None else [0] * len(ns)

            key = ("score", tuple((name, sig, weight) for name, sig, weight, _ in kept))
            totals = self._add(
                totals, window.take(self._signed.node_values(snap, key, weighted)), 1
            )
        if totals is None:
            totals = [0] * len(nodes)
        return totals, offset

    def select_host(self, nodes: list[NodeInfo], totals: list[int]) -> NodeInfo:
        """The highest total; ties broken uniformly at random (as kube's reservoir sampling
        does). A few uniform random probes come first: one that lands on a best node picks it,
        so with many ties no pass counts or walks them; once the probes miss, one tie is drawn
        uniformly by its rank. Either way every tied node is equally likely."""
        best = max(totals)
        randrange = self._rng.randrange
        n = len(totals)
        for _ in range(TIE_PROBES):
            at = randrange(n)
            if totals[at] == best:
                return nodes[at]
        return self._nth_best(nodes, totals, best)

    def _nth_best(self, nodes: list[NodeInfo], totals: list[int], best: int) -> NodeInfo:
        """A node with total `best`, drawn uniformly among those."""
        tied = totals.count(best)
        if tied == 1:
            return nodes[totals.index(best)]
        nth = self._rng.randrange(tied)
        if nth < FEW_TIES:
            at = totals.index(best)
            for _ in range(nth):
                at = totals.index(best, at + 1)
            return nodes[at]
        ties = itertools.compress(
            itertools.count(), map(operator.eq, totals, itertools.repeat(best))
        )
        return nodes[next(itertools.islice(ties, nth, None))]

    def schedule_pod(
        self, state: fw.CycleState, pod: PodInfo, snapshot: fw.Snapshot
    ) -> ScheduleResult:
        """Filter, score and pick a node; raises `FitError` when none fits and
        `NoNodesAvailable` when the cluster has no nodes."""
        nodes = snapshot.node_infos()
        if not nodes:
            raise NoNodesAvailable()
        diagnosis = fw.Diagnosis()
        feasible = self.find_nodes_that_fit(state, pod, nodes, diagnosis, snapshot)
        if not feasible:
            raise fw.FitError(pod, len(nodes), diagnosis)
        evaluated = len(feasible) + len(diagnosis.node_to_status)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, evaluated, 1)
        totals, _ = self._score(state, pod, feasible, snapshot)
        return ScheduleResult(self.select_host(feasible, totals).name, evaluated, len(feasible))

    def run_reserve(self, state: fw.CycleState, pod: PodInfo, node: str) -> fw.Status | None:
        for pl in self.reserve:
            st = pl.reserve(state, pod, node)
            if st is not None and st.code != fw.Code.SUCCESS:
                return st.with_plugin(pl.name)
        return None

    def run_unreserve(self, state: fw.CycleState, pod: PodInfo, node: str) -> None:
        for pl in reversed(self.reserve):
            try:
                pl.unreserve(state, pod, node)
            except Exception:
                log.exception("unreserve of plugin %s failed for %s", pl.name, pod.key)

    def run_permit(self, state: fw.CycleState, pod: PodInfo, node: str) -> fw.Status | None:
        waits: dict[str, float] = {}
        for pl in self.permit:
            st, timeout = pl.permit(state, pod, node)
            if st is None or st.code == fw.Code.SUCCESS:
                continue
            if st.code == fw.Code.WAIT:
                waits[pl.name] = min(timeout, 15 * 60.0)
                continue
            if st.is_rejected():
                return st.with_plugin(pl.name)
            return fw.Status(
                fw.Code.ERROR, f"running Permit plugin {pl.name!r}: {st.message}", plugin=pl.name
            )
        if waits:
            self.handle.waiting_pods[pod.uid] = fw.WaitingPod(pod, waits)
            return fw.Status(fw.Code.WAIT, "one or more plugins asked to wait")
        return None

    async def wait_on_permit(self, pod: PodInfo) -> fw.Status | None:
        wp = self.handle.waiting_pods.get(pod.uid)
        if wp is None:
            return None
        try:
            return await wp.result
        finally:
            self.handle.waiting_pods.pop(pod.uid, None)

    async def run_pre_bind(self, state: fw.CycleState, pod: PodInfo, node: str) -> fw.Status | None:
        for pl in self.pre_bind:
            st = await pl.pre_bind(state, pod, node)
            if st is not None and st.code != fw.Code.SUCCESS:
                return st.with_plugin(pl.name)
        return None

    async def run_bind(self, state: fw.CycleState, pod: PodInfo, node: str) -> fw.Status | None:
        for pl in self.bind:
            st = await pl.bind(state, pod, node)
            if st is not None and st.code == fw.Code.SKIP:
                continue
            if st is not None and st.code != fw.Code.SUCCESS:
                return st.with_plugin(pl.name)
            return None
        return fw.Status(fw.Code.ERROR, "no bind plugin bound the pod")

    def run_post_bind(self, state: fw.CycleState, pod: PodInfo, node: str) -> None:
        for pl in self.post_bind:
            try:
                pl.post_bind(state, pod, node)
            except Exception:
                log.exception("post-bind of plugin %s failed for %s", pl.name, pod.key)
