"""The agent's node-level logic without I/O beyond temporary files: capacity and allocatable,
conditions and heartbeats, the CNI network list it writes (and the user's config it leaves
alone), the podCIDR allocator of the node IPAM controller, image references, pull policy and pull
secrets, garbage collection plans, static pod manifests and mirrors, and the package's shape."""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path
from typing import Any

import pytest

import kybern.agent
from kybern.agent import common, gc, images, network, node, static
from kybern.controllers import nodeipam
from kybern.cri import api

Obj = dict[str, Any]
PACKAGE = Path(kybern.agent.__file__).parent


def test_capacity_and_conditions() -> None:
    m = node.Machine(cpus=4, memory=8 << 30, memory_available=4 << 30,
                     disk_capacity=100 << 30, disk_available=50 << 30, pids=100)  # fmt: skip
    cap, alloc = node.capacity(m)
    assert cap == {"cpu": "4", "memory": f"{8 << 20}Ki", "pods": "110",
                   "ephemeral-storage": f"{100 << 20}Ki", "hugepages-1Gi": "0",
                   "hugepages-2Mi": "0"}  # fmt: skip
    assert alloc["memory"] == f"{(8 << 20) - 100 * 1024}Ki"
    assert alloc["ephemeral-storage"] == str(int((100 << 30) * 0.9))
    conds = node.conditions(m, node.Health(True, True), [], "t1")
    assert [(c["type"], c["status"]) for c in conds] == [
        ("MemoryPressure", "False"),
        ("DiskPressure", "False"),
        ("PIDPressure", "False"),
        ("Ready", "True"),
    ]
    full = node.Machine(memory=8 << 30, memory_available=1 << 20, disk_capacity=100,
                        disk_available=1, pids=100)  # fmt: skip
    later = node.conditions(full, node.Health(True, False, "no network"), conds, "t2")
    by = {c["type"]: c for c in later}
    assert by["MemoryPressure"]["status"] == "True" and by["DiskPressure"]["status"] == "True"
    assert by["Ready"]["status"] == "False" and by["Ready"]["message"] == "no network"
    assert by["PIDPressure"]["lastTransitionTime"] == "t1"  # unchanged status keeps its time
    assert by["Ready"]["lastTransitionTime"] == "t2" and by["Ready"]["lastHeartbeatTime"] == "t2"
    assert node.without_heartbeats({"conditions": conds}) != node.without_heartbeats(
        {"conditions": later}
    )


def test_proc_parsing() -> None:
    assert node.meminfo("MemTotal:  1024 kB\nHugePages_Total: 0\n") == {
        "MemTotal": 1024 * 1024,
        "HugePages_Total": 0,
    }
    assert node.os_image('NAME="x"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n') == (
        "Debian GNU/Linux 12 (bookworm)"
    )


def test_network_list(tmp_path: Path) -> None:
    s = network.Settings(conf_dir=tmp_path, bridge="br9", network="net9", ipam_dir="/ipam")
    doc = network.conflist(["10.244.3.0/24"], s)
    bridge, portmap, loopback = doc["plugins"]  # type: ignore[misc]
    assert bridge["type"] == "bridge" and bridge["bridge"] == "br9" and bridge["isGateway"]
    assert bridge["ipam"] == {
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.3.0/24", "gateway": "10.244.3.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "/ipam",
    }
    assert portmap["capabilities"] == {"portMappings": True} and loopback == {"type": "loopback"}
    assert network.ensure([], s) == network.State(
        False, "network not ready: waiting for the node's podCIDR"
    )
    assert network.ensure(["10.244.3.0/24"], s) == network.State(True, "", "net9")
    path = tmp_path / network.CONF_FILE
    assert json.loads(path.read_text()) == doc and path.stat().st_mode & 0o777 == 0o644
    assert not network.write_atomic(path, network.render(["10.244.3.0/24"], s))  # unchanged
    # a placeholder of the runtime does not count as the user's; another network does
    (tmp_path / "10-kybern-loopback.conflist").write_text(
        json.dumps(
            {"cniVersion": "1.0.0", "name": "kybern-loopback", "plugins": [{"type": "loopback"}]}
        )
    )
    assert network.user_config(tmp_path, "net9") is None
    (tmp_path / "01-mine.conf").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "mine", "type": "bridge"})
    )
    before = path.read_text()
    state = network.ensure(["10.244.9.0/24"], s)
    assert state.ready and state.network == "mine" and path.read_text() == before
    assert network.missing_plugins([str(tmp_path)], ["bridge"]) == ["bridge"]


def test_loaded_pod_network() -> None:
    text = json.dumps({"Networks": [{"Config": {"Name": "cni-loopback"}, "IFName": "lo"},
                                    {"Config": {"Name": "kybern"}, "IFName": "eth0"}]})  # fmt: skip
    assert network.loaded_pod_network(text) == "kybern"
    assert network.loaded_pod_network("{}") == ""
    assert network.loaded_pod_network("not json") is None


def test_cidr_allocator() -> None:
    a = nodeipam.CIDRAllocator("10.244.0.0/22", 24, ["10.244.1.0/24", "10.128.0.0/24"])
    assert [a.allocate() for _ in range(4)] == [
        "10.244.0.0/24",
        "10.244.2.0/24",
        "10.244.3.0/24",
        None,
    ]
    a.release("10.244.2.0/24")
    assert a.allocate() == "10.244.2.0/24"
    assert not a.occupy("10.244.0.0/25") and not a.occupy("bogus")
    with pytest.raises(ValueError):
        nodeipam.CIDRAllocator("10.244.0.0/24", 16)
    assert nodeipam.node_cidrs({"spec": {"podCIDR": "10.0.0.0/24"}}) == ["10.0.0.0/24"]


@pytest.mark.parametrize(
    ("image", "parts", "policy"),
    [
        ("busybox", ("docker.io", "library/busybox", "latest"), "Always"),
        ("busybox:1.36", ("docker.io", "library/busybox", "1.36"), "IfNotPresent"),
        ("kybern.local/busybox:1", ("kybern.local", "busybox", "1"), "IfNotPresent"),
        ("127.0.0.1:5000/a/b", ("127.0.0.1:5000", "a/b", "latest"), "Always"),
        ("localhost/x@sha256:ab", ("localhost", "x", "sha256:ab"), "IfNotPresent"),
        ("user/app:v2", ("docker.io", "user/app", "v2"), "IfNotPresent"),
    ],
)
def test_image_references(image: str, parts: tuple[str, str, str], policy: str) -> None:
    assert images.split_reference(image) == parts
    assert images.pull_policy({"image": image}) == policy
    assert images.pull_policy({"image": image, "imagePullPolicy": "Never"}) == "Never"


def test_pull_secrets() -> None:
    cfg = {"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
        "registry.example.com": {"username": "u", "password": "p"},
        "registry.example.com/team": {"username": "team", "password": "tp"},
    }}  # fmt: skip
    secret = {
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(cfg).encode()).decode()},
    }
    legacy = {"old.example.com": {"username": "o", "password": "q"}}
    old = {
        "type": "kubernetes.io/dockercfg",
        "data": {".dockercfg": base64.b64encode(json.dumps(legacy).encode()).decode()},
    }
    auths = images.auth_for("registry.example.com/team/app:1", [secret, old])
    assert [(a.username, a.password) for a in auths] == [("team", "tp"), ("u", "p")]
    hub = images.auth_for("busybox", [secret])
    assert [(a.username, a.password, a.server_address) for a in hub] == [("hub", "pw", "docker.io")]
    assert [a.username for a in images.auth_for("old.example.com/x", [secret, old])] == ["o"]
    assert images.auth_for("elsewhere.io/x", [secret]) == []
    assert images.credentials({"type": "Opaque", "data": {}}) == []


def _container(
    cid: str, uid: str, name: str, created: int, state: int = api.CONTAINER_EXITED
) -> api.Container:
    return api.Container(
        id=cid, metadata=api.ContainerMetadata(name=name), state=state, created_at=created,
        labels={common.POD_UID_LABEL: uid},
    )  # fmt: skip


def test_gc_plans() -> None:
    conts = [
        _container("a1", "u1", "main", 1),
        _container("a2", "u1", "main", 2),
        _container("a3", "u1", "main", 3, api.CONTAINER_RUNNING),
        _container("b1", "u1", "side", 1),
        _container("x1", "gone", "main", 1),
        api.Container(id="foreign", state=api.CONTAINER_EXITED),
    ]
    assert sorted(gc.plan_containers(conts, 1, {"u1"})) == ["a1", "x1"]
    sbs = [
        api.PodSandbox(id="s0", metadata=api.PodSandboxMetadata(attempt=0),
                       state=api.SANDBOX_NOTREADY, labels={common.POD_UID_LABEL: "u1"}),
        api.PodSandbox(id="s1", metadata=api.PodSandboxMetadata(attempt=1),
                       state=api.SANDBOX_NOTREADY, labels={common.POD_UID_LABEL: "u1"}),
        api.PodSandbox(id="s2", state=api.SANDBOX_NOTREADY, labels={common.POD_UID_LABEL: "gone"}),
        api.PodSandbox(id="s3", state=api.SANDBOX_READY, labels={common.POD_UID_LABEL: "u2"}),
    ]  # fmt: skip
    assert sorted(gc.plan_sandboxes(sbs, {"u1", "u2"})) == ["s0", "s2"]
    imgs = [
        api.Image(id="old", size=100),
        api.Image(id="used", size=100),
        api.Image(id="new", size=100),
        api.Image(id="pause", size=100, repo_tags=["kybern.local/pause:1"]),
    ]
    plan = gc.plan_images(imgs, {"used"}, {"old": 1.0, "new": 5.0}, 150, ["kybern.local/pause:1"])
    assert plan == ["old", "new"]
    assert gc.plan_images(imgs, set(), {}, 0) == []


def test_static_pod_and_mirror(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n"
        "spec: {containers: [{name: c, image: busybox}]}\n"
    )
    (tmp_path / ".hidden.yaml").write_text("kind: Pod\n")
    (tmp_path / "svc.yaml").write_text("kind: Service\n")
    manifests = static.read_manifests(tmp_path)
    assert list(manifests) == ["web.yaml"]
    pod = static.static_pod(manifests["web.yaml"], "n1", "web.yaml")
    m = pod["metadata"]
    assert (m["name"], m["namespace"]) == ("web-n1", "default")
    assert m["uid"] == m["annotations"][common.CONFIG_HASH]
    assert m["annotations"][common.CONFIG_SOURCE] == "file"
    assert pod["spec"]["nodeName"] == "n1" and pod["spec"]["restartPolicy"] == "Always"
    assert common.is_static(pod) and not common.is_mirror(pod)
    again = static.static_pod(manifests["web.yaml"], "n1", "web.yaml")
    assert again["metadata"]["uid"] == m["uid"]
    changed = static.static_pod(
        {**manifests["web.yaml"], "spec": {"containers": []}}, "n1", "web.yaml"
    )
    assert changed["metadata"]["uid"] != m["uid"]
    mirror = static.mirror_of(pod, "node-uid")
    assert "uid" not in mirror["metadata"] and common.is_mirror(mirror)
    assert mirror["metadata"]["annotations"][common.CONFIG_MIRROR] == m["uid"]
    assert common.CONFIG_SEEN not in mirror["metadata"]["annotations"]
    assert mirror["metadata"]["ownerReferences"][0]["uid"] == "node-uid"


def test_package_shape() -> None:
    assert set(kybern.agent.__all__) == {"Agent", "AgentConfig", "ContainerRef"}
    for path in PACKAGE.glob("*.py"):
        if path.name == "httpserver.py" or path.name.startswith("streaming"):
            continue  # another component's modules
        text = path.read_text()
        tree = ast.parse(text)
        assert ast.get_docstring(tree), f"{path.name} has no module docstring"
        assert len(text.splitlines()) < 600, f"{path.name} is too long"
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module:
                assert not n.module.startswith(
                    ("kybern.apiserver", "kybern.controllers", "kybern.scheduler", "kybern.storage")
                ), f"{path.name} imports {n.module}"
