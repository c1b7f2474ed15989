"""The one filter loop (`nodevalues.run_filters`) gives what the loops it replaced gave: per node
the first failing filter's status (the plugin's name set), in the same order, for `filter_each`
and for the framework's chunked search (feasible nodes, diagnosis statuses and their order,
unschedulable plugins, next start index); a filter's `Error` raises. And the signed search's
shortcut for a signature every node fits (kept statuses all None) finds the same nodes, window
and next start index as the general scan of the kept statuses."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kybern.scheduler import framework as fw
from kybern.scheduler import plugins
from kybern.scheduler.cache import Cache
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo
from kybern.scheduler.nodevalues import BatchFilter, filter_each, num_feasible_nodes_to_find
from kybern.scheduler.profile import Profile
from kybern.scheduler.runtime import MIN_CHUNK, Framework

Obj = dict[str, Any]
Table = list[dict[str, int]]  # per filter: node name -> 0 unschedulable, 1 same plugin, 2 error


def node_obj(name: str) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "50"}},
    }


def pod_obj(name: str) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": name},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]},
    }


def fake_filters(table: Table) -> list[tuple[str, BatchFilter]]:
    """Batch filters failing the nodes `table` names; some statuses already carry the plugin's
    name, the others carry another one (the loop must set the filter's)."""
    out: list[tuple[str, BatchFilter]] = []
    for k, fails in enumerate(table):
        name = f"F{k}"

        def fn(
            state: fw.CycleState,
            pod: PodInfo,
            nodes: list[NodeInfo],
            fails: dict[str, int] = fails,
            name: str = name,
        ) -> dict[int, fw.Status]:
            got: dict[int, fw.Status] = {}
            for i in reversed(range(len(nodes))):  # an order of its own, kept by the loop
                kind = fails.get(nodes[i].name)
                if kind == 2:
                    got[i] = fw.Status(fw.Code.ERROR, f"boom {nodes[i].name}")
                elif kind is not None:
                    got[i] = fw.unschedulable(f"no {nodes[i].name}").with_plugin(
                        name if kind == 1 else "Other"
                    )
            return got

        out.append((name, fn))
    return out


def reference_filter_each(
    state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo], filters: list[tuple[str, Any]]
) -> list[fw.Status | None]:
    """`filter_each` as it was written before `run_filters`."""
    out: list[fw.Status | None] = [None] * len(nodes)
    alive, where = nodes, list(range(len(nodes)))
    for name, fn in filters:
        if not alive:
            break
        failed = fn(state, pod, alive)
        if not failed:
            continue
        for i, fst in failed.items():
            if fst.code == fw.Code.ERROR:
                raise RuntimeError(f"running Filter plugin {name!r}: {fst.message}")
            out[where[i]] = fst if fst.plugin == name else fst.with_plugin(name)
        keep = [i for i in range(len(alive)) if i not in failed]
        alive, where = [alive[i] for i in keep], [where[i] for i in keep]
    return out


def reference_search(
    fwk: Framework,
    state: fw.CycleState,
    pod: PodInfo,
    nodes: list[NodeInfo],
    diagnosis: fw.Diagnosis,
    filters: list[tuple[str, Any]],
    to_find: int,
    start: int,
) -> tuple[list[NodeInfo], int]:
    """The chunk loop of `find_nodes_that_fit` as it was written before `run_filters`: the
    feasible nodes and the next start index."""
    n_all = len(nodes)
    rotated = nodes[start:] + nodes[:start] if start else nodes
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
            at = take - 1 if alive is chunk else next(i for i, n in enumerate(chunk) if n is last)
            processed = pos + at + 1
            feasible += alive[:take]
            break
        feasible += alive
        pos += size
        processed = pos
    return feasible, (start + processed) % len(nodes)


def status_view(s: fw.Status | None) -> Any:
    return None if s is None else (s.code, s.reasons, s.plugin)


def tables(n_nodes: int) -> st.SearchStrategy[Table]:
    fails = st.dictionaries(
        st.sampled_from([f"n{i}" for i in range(n_nodes)]),
        st.sampled_from([0, 0, 0, 1, 1, 2]),
        max_size=n_nodes,
    )
    return st.lists(fails, min_size=0, max_size=4)


def framework(n_nodes: int) -> tuple[Framework, Cache]:
    cache = Cache()
    for i in range(n_nodes):
        cache.add_node(node_obj(f"n{i}"))
    return Framework(Profile(), plugins.in_tree(), fw.Handle(snapshot=cache)), cache


def outcome(f: Any) -> tuple[str, Any]:
    try:
        return "ok", f()
    except RuntimeError as e:
        return "error", str(e)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), tables(n))))
def test_filter_each_is_the_reference(case: tuple[int, Table]) -> None:
    n_nodes, table = case
    _, cache = framework(n_nodes)
    nodes = cache.node_infos()
    pi = PodInfo(pod_obj("p"))
    filters = fake_filters(table)
    state = fw.CycleState()
    got = outcome(lambda: [status_view(s) for s in filter_each(state, pi, nodes, filters)])
    want = outcome(
        lambda: [status_view(s) for s in reference_filter_each(state, pi, nodes, filters)]
    )
    assert got == want


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 150).flatmap(lambda n: st.tuples(st.just(n), tables(n))),
    st.integers(0, 10_000),
    st.sampled_from([0, 1, 10, 50, 100]),
)
def test_chunked_search_is_the_reference(
    case: tuple[int, Table], start_seed: int, percentage: int
) -> None:
    n_nodes, table = case
    fwk, cache = framework(n_nodes)
    fwk.profile.percentage_of_nodes_to_score = percentage
    nodes = cache.node_infos()
    pi = PodInfo(pod_obj("p"))
    filters = fake_filters(table)
    fwk._filters = filters  # the general path (no snapshot) runs these after the pre-filters
    start = start_seed % n_nodes
    fwk._next_start = start
    to_find = num_feasible_nodes_to_find(percentage, n_nodes)

    def got() -> Any:
        d = fw.Diagnosis()
        feasible = fwk.find_nodes_that_fit(fw.CycleState(), pi, nodes, d)
        statuses = [(k, status_view(v)) for k, v in d.node_to_status.items()]
        return feasible, fwk._next_start, statuses, d.unschedulable_plugins

    def want() -> Any:
        d = fw.Diagnosis()
        state = fw.CycleState()
        fwk.run_pre_filter(state, pi, nodes)
        feasible, nxt = reference_search(fwk, state, pi, nodes, d, filters, to_find, start)
        statuses = [(k, status_view(v)) for k, v in d.node_to_status.items()]
        return feasible, nxt, statuses, d.unschedulable_plugins

    w = outcome(want)
    fwk._next_start = start
    assert outcome(got) == w


@pytest.mark.parametrize("n_nodes", [1, 7, 99, 100, 101, 250, 1000])
def test_all_fit_shortcut_is_the_general_scan(n_nodes: int) -> None:
    """Signed search: with the kept statuses all None the shortcut applies; with the entry's
    `uniform` flag forced off the general scan runs; both give the same result, cycle after
    cycle (the start index rotating, pods assumed)."""
    fast, fast_cache = framework(n_nodes)
    slow, slow_cache = framework(n_nodes)
    rng = random.Random(n_nodes)
    for step in range(30):
        pi = PodInfo(pod_obj(f"p{step}"))
        results = []
        for fwk, cache, force in ((fast, fast_cache, False), (slow, slow_cache, True)):
            if force:
                for entry in fwk._signed.values():
                    entry.uniform = False
            d = fw.Diagnosis()
            feasible = fwk.find_nodes_that_fit(fw.CycleState(), pi, cache.node_infos(), d, cache)
            window = fwk._window
            assert window is not None and window.feasible is feasible
            results.append(
                (
                    [n.name for n in feasible],
                    fwk._next_start,
                    window.start,
                    window.count,
                    window.mask,
                    dict(d.node_to_status),
                )
            )
        assert results[0] == results[1]
        host = rng.choice(results[0][0])
        for cache in (fast_cache, slow_cache):
            cache.assume_pod(PodInfo(pod_obj(f"p{step}")).with_node(host))
    assert any(e.uniform for e in fast._signed.values())  # the shortcut did run
