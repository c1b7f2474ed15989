"""Two `kybern server` processes on one 3-member etcd cluster, driven by kubectl and the
`kubernetes` client: each sees the other's writes at once (consistent reads), a watch on one
sees writes made through the other, a client resumes its watch on the other server from its
last resourceVersion, compare-and-swap updates through both servers form a linearizable history
per object, the controllers have exactly one leader, and killing one server leaves the other
undisturbed."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, unique, wait_for
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from test_etcd_support import EtcdCluster, etcd_cluster


class EtcdServer(Server):
    """A `kybern server` on an etcd cluster (everything else as conftest's Server)."""

    def __init__(self, base_dir: Path, endpoint: str) -> None:
        super().__init__(base_dir, args=("--datastore-endpoint", endpoint))
        self.endpoint = endpoint


@contextlib.contextmanager
def etcd_servers(url: str, count: int) -> Iterator[list[EtcdServer]]:
    """`count` servers with `--datastore-endpoint url`; stopped and removed at the end."""
    base = Path(tempfile.mkdtemp(prefix="kybern-etcd-it-"))
    servers = [EtcdServer(base / f"s{i}", url) for i in range(count)]
    try:
        for s in servers:
            s.start()
        yield servers
    finally:
        for s in servers:
            with contextlib.suppress(Exception):
                s.stop()
            s.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    with etcd_cluster(3) as c:
        yield c


@pytest.fixture(scope="module")
def pair(cluster: EtcdCluster) -> Iterator[list[EtcdServer]]:
    with etcd_servers(cluster.url, 2) as servers:
        yield servers


def core(srv: Server) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(srv.client())


def configmap(name: str, data: dict[str, str]) -> k8s.V1ConfigMap:
    return k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name), data=data)


def test_each_server_sees_the_others_writes(pair: list[EtcdServer]) -> None:
    a, b = pair
    name = unique("cm")
    a.kubectl("create", "configmap", name, "--from-literal=k=1")
    got = b.kubectl_json("get", "configmap", name)  # at once: a consistent read on b
    assert got["data"] == {"k": "1"}
    b.kubectl("patch", "configmap", name, "-p", '{"data":{"k":"2"}}')
    again = a.kubectl_json("get", "configmap", name)
    assert again["data"] == {"k": "2"}
    assert int(again["metadata"]["resourceVersion"]) > int(got["metadata"]["resourceVersion"])
    listed = b.kubectl_json("get", "configmaps")
    assert name in [i["metadata"]["name"] for i in listed["items"]]
    a.kubectl("delete", "configmap", name)
    gone = b.kubectl("get", "configmap", name, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    # the `kubernetes` client too
    created = core(b).create_namespaced_config_map("default", configmap(name, {"x": "y"}))
    read = core(a).read_namespaced_config_map(name, "default")
    assert read.metadata.resource_version == created.metadata.resource_version
    core(a).delete_namespaced_config_map(name, "default")


def _watch(
    srv: Server, rv: str, label: str, out: list[Any], stop: threading.Event, ready: threading.Event
) -> None:
    w = k8s_watch.Watch()
    api = core(srv)
    for ev in w.stream(
        api.list_namespaced_config_map,
        "default",
        label_selector=f"w={label}",
        resource_version=rv,
        timeout_seconds=60,
        _request_timeout=90,
    ):
        out.append(ev)
        ready.set()
        if stop.is_set():
            w.stop()
    ready.set()


def test_watch_on_one_sees_writes_through_the_other(pair: list[EtcdServer]) -> None:
    a, b = pair
    label = unique("w")
    rv = core(b).list_namespaced_config_map("default").metadata.resource_version
    events: list[Any] = []
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=_watch, args=(b, rv, label, events, stop, ready), daemon=True)
    t.start()
    names = [unique("cm") for _ in range(5)]
    api = core(a)
    for n in names:
        body = configmap(n, {"v": "1"})
        body.metadata.labels = {"w": label}
        api.create_namespaced_config_map("default", body)
    wait_for(lambda: len(events) >= 5, message="5 watch events on the other server")
    stop.set()
    api.delete_namespaced_config_map(names[0], "default")  # wakes the watch so it stops
    t.join(90)
    assert [e["object"].metadata.name for e in events[:5]] == names
    assert all(e["type"] == "ADDED" for e in events[:5])
    for n in names[1:]:
        api.delete_namespaced_config_map(n, "default")


def test_watch_resumes_on_the_other_server(pair: list[EtcdServer]) -> None:
    a, b = pair
    label = unique("r")
    api_a, api_b = core(a), core(b)
    rv = api_a.list_namespaced_config_map("default").metadata.resource_version
    first = configmap(unique("cm"), {"n": "0"})
    first.metadata.labels = {"w": label}
    created = api_a.create_namespaced_config_map("default", first)
    last_rv = created.metadata.resource_version  # what a client saw on a before switching
    assert int(last_rv) > int(rv)
    # while the client is away, more changes happen through a
    later = []
    for i in range(3):
        body = configmap(unique("cm"), {"n": str(i + 1)})
        body.metadata.labels = {"w": label}
        later.append(api_a.create_namespaced_config_map("default", body).metadata.name)
    api_a.delete_namespaced_config_map(created.metadata.name, "default")
    events: list[Any] = []
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=_watch, args=(b, last_rv, label, events, stop, ready), daemon=True)
    t.start()
    wait_for(lambda: len(events) >= 4, message="the missed events, replayed by the other server")
    stop.set()
    extra = configmap(unique("cm"), {})
    extra.metadata.labels = {"w": label}
    api_b.create_namespaced_config_map("default", extra)
    t.join(90)
    got = [(e["type"], e["object"].metadata.name) for e in events[:4]]
    assert got == [("ADDED", n) for n in later] + [("DELETED", created.metadata.name)]
    revisions = [int(e["object"].metadata.resource_version) for e in events]
    assert revisions == sorted(revisions) and revisions[0] > int(last_rv)
    for n in [*later, extra.metadata.name]:
        api_b.delete_namespaced_config_map(n, "default")


def test_cas_history_is_linearizable_per_object(pair: list[EtcdServer]) -> None:
    """Clients read-modify-write counters with the resourceVersion precondition through both
    servers. Per object, the acknowledged writes must form one chain: each acknowledged update
    was made from the version the previous acknowledged update produced (no lost update), in
    resourceVersion order, and the final object is the last one."""
    apis = [core(s) for s in pair]
    names = [unique("cas") for _ in range(3)]
    initial = {
        n: apis[0].create_namespaced_config_map("default", configmap(n, {"c": "0"})) for n in names
    }
    acked: dict[str, list[tuple[int, int, str]]] = {n: [] for n in names}  # (rv, from rv, value)
    lock = threading.Lock()

    def worker(w: int) -> None:
        api = apis[w % 2]
        for i in range(12):
            name = names[(w + i) % len(names)]
            cur = api.read_namespaced_config_map(name, "default")
            value = f"{w}-{i}"
            cur.data = {"c": str(int(cur.data["c"]) + 1), "by": value}
            try:
                new = api.replace_namespaced_config_map(name, "default", cur)
            except k8s.ApiException as e:
                assert e.status == 409, e  # a conflict: someone else won; nothing written
                continue
            with lock:
                acked[name].append(
                    (int(new.metadata.resource_version), int(cur.metadata.resource_version), value)
                )

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(worker, range(6)))
    for name in names:
        chain = sorted(acked[name])
        previous = int(initial[name].metadata.resource_version)
        for rv, from_rv, _ in chain:
            assert from_rv == previous, f"{name}: update to {rv} was made from {from_rv}"
            previous = rv
        final = apis[1].read_namespaced_config_map(name, "default")
        assert int(final.metadata.resource_version) == previous
        assert final.data["c"] == str(len(chain))
        if chain:
            assert final.data["by"] == chain[-1][2]
        apis[0].delete_namespaced_config_map(name, "default")
    assert sum(len(v) for v in acked.values()) > len(names)


def test_controllers_have_one_leader(pair: list[EtcdServer]) -> None:
    a, b = pair
    coord = k8s.CoordinationV1Api(a.client())
    leases = {le.metadata.name: le for le in coord.list_namespaced_lease("kube-system").items}
    for name in ("kybern-controller-manager", "kybern-scheduler"):
        assert name in leases, sorted(leases)
        holder = leases[name].spec.holder_identity
        assert holder, name
        # both servers see the same single holder
        other = k8s.CoordinationV1Api(b.client()).read_namespaced_lease(name, "kube-system")
        assert other.spec.holder_identity == holder


def test_killing_one_server_leaves_the_other(pair: list[EtcdServer]) -> None:
    a, b = pair
    label = unique("k")
    events: list[Any] = []
    stop, ready = threading.Event(), threading.Event()
    rv = core(b).list_namespaced_config_map("default").metadata.resource_version
    t = threading.Thread(target=_watch, args=(b, rv, label, events, stop, ready), daemon=True)
    t.start()
    a.kill()
    api = core(b)
    names = []
    for _ in range(3):
        body = configmap(unique("cm"), {})
        body.metadata.labels = {"w": label}
        names.append(api.create_namespaced_config_map("default", body).metadata.name)
    wait_for(lambda: len(events) >= 3, message="the watch on the survivor")
    stop.set()
    api.delete_namespaced_config_map(names[0], "default")
    t.join(90)
    assert [e["object"].metadata.name for e in events[:3]] == names
    assert b.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    a.start()  # back for whatever runs after
    assert a.kubectl_json("get", "configmap", names[1])["metadata"]["name"] == names[1]
    for n in names[1:]:
        api.delete_namespaced_config_map(n, "default")
