"""The metrics server's pure parts: Kubernetes quantity and duration formats, the Summary API
parser (instantaneous rates, rates from cumulative counters between two scrapes, pods reported
whole or not at all), agent URLs, the zero source for simulated nodes, and the NodeMetrics /
PodMetrics objects kubectl top reads."""

from __future__ import annotations

from typing import Any

from kybern.metricsserver import server as ms
from kybern.metricsserver import sources

Obj = dict[str, Any]


def test_quantities() -> None:
    assert ms.cpu_quantity(0) == "0"
    assert ms.cpu_quantity(2_000_000_000) == "2"
    assert ms.cpu_quantity(250_000_000) == "250m"
    assert ms.cpu_quantity(1_500_000) == "1500u"
    assert ms.cpu_quantity(123_456_789) == "123456789n"
    assert ms.memory_quantity(0) == "0"
    assert ms.memory_quantity(1 << 20) == "1Mi"
    assert ms.memory_quantity(1536 * 1024) == "1536Ki"
    assert ms.memory_quantity(1234) == "1234"
    assert ms.memory_quantity(3 << 30) == "3Gi"


def test_go_durations() -> None:
    assert ms.go_duration(15) == "15s"
    assert ms.go_duration(1.5) == "1.5s"
    assert ms.go_duration(20.037) == "20.037s"
    assert ms.go_duration(60) == "1m0s"
    assert ms.go_duration(150.5) == "2m30.5s"
    assert ms.go_duration(3600) == "1h0m0s"
    assert ms.go_duration(0) == "0s"


def summary(t: str, node_cpu: Obj, pods: list[Obj]) -> Obj:
    return {
        "node": {
            "nodeName": "n1",
            "cpu": {"time": t, **node_cpu},
            "memory": {"time": t, "workingSetBytes": 2 << 30},
        },
        "pods": pods,
    }


def pod(name: str, containers: list[Obj]) -> Obj:
    return {"podRef": {"name": name, "namespace": "default", "uid": "u"}, "containers": containers}


def container(name: str, t: str, cpu: Obj, mem: int | None = 10 << 20) -> Obj:
    c: Obj = {"name": name, "cpu": {"time": t, **cpu}}
    if mem is not None:
        c["memory"] = {"time": t, "workingSetBytes": mem}
    return c


def test_summary_with_instantaneous_rates() -> None:
    t = "2024-05-01T10:00:00.123456789Z"
    doc = summary(
        t,
        {"usageNanoCores": 500_000_000},
        [
            pod("web", [container("app", t, {"usageNanoCores": 1_000_000})]),
            pod("half", [container("a", t, {"usageNanoCores": 1}), container("b", t, {}, None)]),
        ],
    )
    s = sources.SummaryParser().parse(doc, 15.0, now=0.0)
    assert s is not None
    assert (s.node, s.usage, s.window) == ("n1", sources.Usage(500_000_000, 2 << 30), 15.0)
    assert s.timestamp == sources.parse_time("2024-05-01T10:00:00.123456Z", 0)
    assert [(p.name, p.containers) for p in s.pods] == [
        ("web", {"app": sources.Usage(1_000_000, 10 << 20)})
    ]  # "half" lacks a container's numbers: left out whole


def test_summary_rates_from_cumulative_counters() -> None:
    parser = sources.SummaryParser()

    def doc(t: str, node_total: int, c_total: int) -> Obj:
        return summary(
            t,
            {"usageCoreNanoSeconds": node_total},
            [pod("web", [container("app", t, {"usageCoreNanoSeconds": c_total})])],
        )

    assert parser.parse(doc("2024-05-01T10:00:00Z", 10**9, 10**8), 15.0) is None  # one point
    s = parser.parse(doc("2024-05-01T10:00:10Z", 6 * 10**9, 6 * 10**8), 15.0)
    assert s is not None
    assert s.usage.cpu_nanocores == 500_000_000 and s.window == 10.0
    assert s.pods[0].containers["app"].cpu_nanocores == 50_000_000


def test_agent_url_and_simulated_nodes() -> None:
    node: Obj = {
        "metadata": {"name": "n", "annotations": {sources.SIMULATED: "true"}},
        "status": {
            "addresses": [
                {"type": "Hostname", "address": "n"},
                {"type": "InternalIP", "address": "10.1.2.3"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    }
    assert sources.agent_url(node) == "https://10.1.2.3:10250"
    assert sources.is_simulated(node)
    node["status"]["addresses"] = [{"type": "InternalIP", "address": "fd00::1"}]
    node["status"]["daemonEndpoints"] = {}
    assert sources.agent_url(node) == "https://[fd00::1]:10250"
    assert sources.agent_url({"metadata": {"name": "x"}}) == ""


async def test_zero_source_reports_every_container() -> None:
    node: Obj = {"metadata": {"name": "sim-0"}}
    pods: list[Obj] = [
        {
            "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        }
    ]
    s = await sources.ZeroSource(5.0).scrape(node, pods)
    assert s is not None and s.usage == sources.Usage(0, 0) and s.window == 5.0
    assert s.pods[0].containers == {"a": sources.Usage(0, 0), "b": sources.Usage(0, 0)}


def test_metrics_objects() -> None:
    sample = sources.NodeSample("n1", sources.Usage(250_000_000, 1 << 30), 1714557600.0, 15.0)
    node: Obj = {"metadata": {"name": "n1", "labels": {"zone": "a"}}}
    nm = ms.node_metrics(sample, node, 1714557601.0)
    assert nm == {
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": "n1",
            "labels": {"zone": "a"},
            "creationTimestamp": "2024-05-01T10:00:01Z",
        },
        "timestamp": "2024-05-01T10:00:00Z",
        "window": "15s",
        "usage": {"cpu": "250m", "memory": "1Gi"},
    }
    ps = sources.PodSample(
        "d", "p", {"a": sources.Usage(1000, 1024), "b": sources.Usage(0, 0)}, 1714557600.0, 2.5
    )
    pm = ms.pod_metrics(ps, {"metadata": {"name": "p", "namespace": "d"}}, 1714557600.0)
    assert pm["metadata"]["namespace"] == "d" and pm["window"] == "2.5s"
    assert pm["containers"] == [
        {"name": "a", "usage": {"cpu": "1u", "memory": "1Ki"}},
        {"name": "b", "usage": {"cpu": "0", "memory": "0"}},
    ]
    assert ms._pod_total(pm) == ("1u", "1Ki")
