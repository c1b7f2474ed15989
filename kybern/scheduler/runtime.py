"""The framework runtime (kube-scheduler's `frameworkImpl` plus `schedulePod`): instantiates a
profile's plugins from the registry, runs each extension point in profile order with kube's
semantics (Skip at pre-filter/pre-score skips that plugin's filter/score, the first non-success
filter status ends a node's evaluation, scores are normalized then weighted), samples the nodes
to evaluate (`percentageOfNodesToScore`, rotating start index), and picks the best node with a
random tie-break. Everything here is synchronous except the binding-cycle extension points."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from kybern.scheduler import framework as fw
from kybern.scheduler import profile as profmod
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo

log = logging.getLogger("kybern.scheduler")

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_CHUNK = 16  # nodes filtered per batch call once most of the sample is found
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
NO_NODES_AVAILABLE = "no nodes available to schedule pods"


@dataclass
class ScheduleResult:
    suggested_host: str
    evaluated_nodes: int
    feasible_nodes: int


BatchFilter = Callable[[fw.CycleState, PodInfo, list[NodeInfo]], dict[int, fw.Status]]
BatchScore = Callable[[fw.CycleState, PodInfo, list[NodeInfo]], list[int]]
Normalize = Callable[[fw.CycleState, PodInfo, list[NodeInfo], list[int]], fw.Status | None]


def _batch_filter(pl: fw.FilterPlugin) -> BatchFilter:
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


def _batch_score(pl: fw.ScorePlugin) -> BatchScore:
    if isinstance(pl, fw.BatchScorePlugin):
        return pl.score_nodes
    f = pl.score

    def score_nodes(state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        return [f(state, pod, n) for n in nodes]

    return score_nodes


class NoNodesAvailable(Exception):
    def __str__(self) -> str:
        return NO_NODES_AVAILABLE


def num_feasible_nodes_to_find(percentage: int, num_all_nodes: int) -> int:
    """kube's adaptive sample size: all nodes below 100, else 50% - n/125 (at least 5%), and
    never fewer than 100."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    if percentage <= 0:
        percentage = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    return max(num_all_nodes * min(percentage, 100) // 100, MIN_FEASIBLE_NODES_TO_FIND)


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
            (pl.name, _batch_filter(pl)) for pl in self.filter
        ]
        self._scorers: list[tuple[str, BatchScore, Normalize | None, int]] = [
            (
                pl.name,
                _batch_score(pl),
                pl.normalize_score if isinstance(pl, fw.ScoreExtensions) else None,
                self.weights.get(pl.name, 1),
            )
            for pl in self.score
        ]
        self._next_start = 0
        self._rng = random.Random()

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

    def find_nodes_that_fit(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo], diagnosis: fw.Diagnosis
    ) -> list[NodeInfo]:
        """Pre-filter, then filter nodes from the rotating start index until enough fit.

        Nodes go through the filters a chunk at a time (plugins with the batch capability
        filter a whole chunk in one call); per node the outcome is the same as running the
        filter plugins in order and stopping at the first failure."""
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
        n_all = len(candidates)
        skip = state.skip_filter_plugins
        filters = [f for f in self._filters if f[0] not in skip] if skip else self._filters
        rotated = candidates[start:] + candidates[:start] if start else candidates
        feasible: list[NodeInfo] = []
        pos = processed = 0
        while pos < n_all and len(feasible) < to_find:
            size = min(max(to_find - len(feasible), MIN_CHUNK), n_all - pos)
            chunk = rotated[pos : pos + size]
            alive = chunk
            for name, fn in filters:
                if not alive:
                    break
                failed = fn(state, pod, alive)
                if not failed:
                    continue
                for i, fst in failed.items():
                    if fst.code == fw.Code.ERROR:
                        raise RuntimeError(f"running Filter plugin {name!r}: {fst.message}")
                    diagnosis.node_to_status[alive[i].name] = (
                        fst if fst.plugin == name else fst.with_plugin(name)
                    )
                diagnosis.unschedulable_plugins.add(name)
                alive = [n for i, n in enumerate(alive) if i not in failed]
            take = to_find - len(feasible)
            if len(alive) >= take:
                last = alive[take - 1]
                at = (
                    take - 1
                    if alive is chunk
                    else next(i for i, n in enumerate(chunk) if n is last)
                )
                processed = pos + at + 1
                feasible += alive[:take]
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

    def run_score(self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        """Pre-score, score, normalize and weigh; the total per node, aligned with `nodes`."""
        for pre in self.pre_score:
            st = pre.pre_score(state, pod, nodes)
            if st is None or st.code == fw.Code.SUCCESS:
                continue
            if st.code == fw.Code.SKIP:
                state.skip_score_plugins.add(pre.name)
                continue
            raise RuntimeError(f"running PreScore plugin {pre.name!r}: {st.message}")
        totals: list[int] | None = None
        skip = state.skip_score_plugins
        for name, score_nodes, normalize, weight in self._scorers:
            if name in skip:
                continue
            scores = score_nodes(state, pod, nodes)
            if normalize is not None:
                st = normalize(state, pod, nodes, scores)
                if st is not None and st.code != fw.Code.SUCCESS:
                    raise RuntimeError(f"normalizing scores of {name!r}: {st.message}")
            if scores and (min(scores) < fw.MIN_NODE_SCORE or max(scores) > fw.MAX_NODE_SCORE):
                bad = next(v for v in scores if not fw.MIN_NODE_SCORE <= v <= fw.MAX_NODE_SCORE)
                raise RuntimeError(
                    f"plugin {name!r} returns an invalid score {bad}, it should in the range "
                    f"of [{fw.MIN_NODE_SCORE}, {fw.MAX_NODE_SCORE}] after normalizing"
                )
            if totals is None:
                totals = [v * weight for v in scores] if weight != 1 else scores
            elif weight == 1:
                totals = [t + v for t, v in zip(totals, scores, strict=True)]
            else:
                totals = [t + v * weight for t, v in zip(totals, scores, strict=True)]
        return totals if totals is not None else [0] * len(nodes)

    def select_host(self, nodes: list[NodeInfo], totals: list[int]) -> NodeInfo:
        """The highest total; ties broken uniformly at random."""
        best = max(totals)
        tied = [i for i, t in enumerate(totals) if t == best]
        return nodes[tied[0] if len(tied) == 1 else self._rng.choice(tied)]

    def schedule_pod(
        self, state: fw.CycleState, pod: PodInfo, snapshot: fw.Snapshot
    ) -> ScheduleResult:
        """Filter, score and pick a node; raises `FitError` when none fits and
        `NoNodesAvailable` when the cluster has no nodes."""
        nodes = snapshot.node_infos()
        if not nodes:
            raise NoNodesAvailable()
        diagnosis = fw.Diagnosis()
        feasible = self.find_nodes_that_fit(state, pod, nodes, diagnosis)
        if not feasible:
            raise fw.FitError(pod, len(nodes), diagnosis)
        evaluated = len(feasible) + len(diagnosis.node_to_status)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, evaluated, 1)
        totals = self.run_score(state, pod, feasible)
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
