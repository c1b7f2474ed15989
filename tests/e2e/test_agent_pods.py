"""The node agent (`kybern agent` as a child process) against the real containerd, runc and CNI
plugins, with a real `kybern server` (controllers and scheduler): a busybox pod runs on the
agent's node with an address of the node's podCIDR; a Deployment's pods run; a liveness probe
that starts failing restarts the container; a crashing container goes into CrashLoopBackOff with
a growing back-off and its dead containers are collected; deleting a pod runs its preStop hook,
TERMs it, stops it at the end of its grace period and removes its sandbox; a configMap volume
follows an update; env, envFrom, downward API, secret and projected (token) volumes, emptyDir on
tmpfs and hostPath; init containers in order; restart policies and activeDeadlineSeconds; a
readiness probe over HTTP; an image pulled from a registry (policy Always, a pull secret).
The module's cluster fails its teardown if anything is left."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from agent_helpers import (
    Cluster,
    container_id,
    container_status,
    exec_in,
    in_namespace,
    is_ready,
    is_running,
    pod_manifest,
    running_cluster,
    wait_until,
)

from kybern.agent import common
from kybern.api import registry as api_registry
from kybern.cri import messages
from kybern.images import busybox, oci, registry

pytestmark = pytest.mark.asyncio(loop_scope="module")
Obj = dict[str, Any]
REG = api_registry.Registry()
DEPLOYMENTS = REG.lookup("apps", "v1", "deployments")
EVENTS = REG.lookup("", "v1", "events")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with running_cluster(Path(tmp_path_factory.mktemp("agent-pods"))) as c:
        yield c


async def run_pod(c: Cluster, ns: str, pod: Obj) -> Obj:
    await c.apply(in_namespace(pod, ns))
    return await c.wait_pod(ns, pod["metadata"]["name"], is_running)


async def test_busybox_pod_runs_with_an_ip_of_the_node(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    await cluster.kubectl(
        "run", "bb", "-n", ns, "--image", busybox.BUSYBOX_IMAGE, "--command", "--", "sleep", "3600"
    )
    pod = await cluster.wait_pod(ns, "bb", is_running)
    st = pod["status"]
    assert pod["spec"]["nodeName"] == cluster.node
    node = await cluster.node_obj()
    assert ipaddress.ip_address(st["podIP"]) in ipaddress.ip_network(node["spec"]["podCIDR"])
    assert st["hostIP"] == "127.0.0.1" and st["qosClass"] == "BestEffort" and st["startTime"]
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {
        "PodScheduled": "True",
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    cs = container_status(pod, "bb")  # kubectl run names the container after the pod
    assert cs["containerID"].startswith("containerd://") and cs["imageID"].startswith("sha256:")
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    sandboxes = await cluster.rt.list_pod_sandbox(
        messages.sandbox_filter(labels={common.POD_UID_LABEL: pod["metadata"]["uid"]})
    )
    assert [s.metadata.name for s in sandboxes] == ["bb"]
    code, out = await exec_in(cluster, pod, ["hostname"], "bb")
    assert (code, out.strip()) == (0, "bb")


async def test_deployment_pods_run(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "web", "image": "kybern.local/busybox:1",
                         "command": ["httpd", "-f", "-p", "8080"]}
                    ],
                },
            },
        },
    }  # fmt: skip
    await cluster.apply(dep)

    async def available() -> Obj | None:
        d = await cluster.client.get(DEPLOYMENTS, "web", ns)
        return d if (d.get("status") or {}).get("availableReplicas") == 3 else None

    await wait_until(available, 90.0, "3 available replicas")
    pods = (await cluster.client.list(common.PODS, ns)).get("items") or []
    assert len(pods) == 3 and all(is_running(p) for p in pods)
    assert {p["spec"]["nodeName"] for p in pods} == {cluster.node}
    assert len({p["status"]["podIP"] for p in pods}) == 3


async def test_failing_liveness_probe_restarts_the_container(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    pod = pod_manifest(
        "live",
        ["sh", "-c", "touch /tmp/ok; sleep 2; rm /tmp/ok; sleep 3600"],
        container={
            "livenessProbe": {
                "exec": {"command": ["cat", "/tmp/ok"]},
                "periodSeconds": 1,
                "failureThreshold": 1,
            }
        },
    )
    first = await run_pod(cluster, ns, pod)
    old_id = container_id(first)

    def restarted(p: Obj) -> bool:
        cs = container_status(p)
        return cs.get("restartCount", 0) >= 1 and "running" in cs.get("state", {})

    p = await cluster.wait_pod(ns, "live", restarted, 60.0, "a restart after the probe failed")
    cs = container_status(p)
    assert container_id(p) != old_id
    assert cs["lastState"]["terminated"]["exitCode"] == 137  # killed: sleep ignores TERM
    assert cs["lastState"]["terminated"]["containerID"] == f"containerd://{old_id}"
    events = (await cluster.client.list(EVENTS, ns)).get("items") or []
    assert any(
        e["reason"] == "Unhealthy" and "Liveness probe failed" in e["message"] for e in events
    )


async def test_crash_loop_backs_off_longer_each_time(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    await cluster.apply(in_namespace(pod_manifest("crash", ["sh", "-c", "echo boom; exit 3"]), ns))
    messages_seen: list[str] = []

    async def third_restart() -> bool:
        p = await cluster.pod(ns, "crash")
        cs = container_status(p)
        waiting = cs.get("state", {}).get("waiting", {})
        if waiting.get("reason") == "CrashLoopBackOff":
            msg = waiting["message"].split(" restarting")[0]
            if msg not in messages_seen:
                messages_seen.append(msg)
        return cs.get("restartCount", 0) >= 4

    await wait_until(third_restart, 90.0, "four restarts")
    # the agent runs with a 1 s base: 1 s, 2 s, 4 s, ... (a short one may pass unobserved)
    delays = [int(m.removeprefix("back-off ").removesuffix("s")) for m in messages_seen]
    assert len(delays) >= 2 and delays == sorted(set(delays)), messages_seen
    assert set(delays) <= {1, 2, 4, 8}, messages_seen
    p = await cluster.pod(ns, "crash")
    cs = container_status(p)
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert p["status"]["phase"] == "Running"  # restartPolicy Always: it is restarting

    async def collected() -> bool:  # dead containers beyond the newest one are removed
        conts = await cluster.rt.list_containers(
            messages.container_filter(labels={common.POD_UID_LABEL: p["metadata"]["uid"]})
        )
        return len(conts) <= 2

    await wait_until(collected, 30.0, "garbage collection of the dead containers")


async def test_delete_runs_prestop_terms_and_removes_the_sandbox(
    cluster: Cluster, tmp_path: Path
) -> None:
    ns = await cluster.namespace()
    script = "trap 'echo term >> /out/log' TERM; while :; do sleep 1; done"
    pre_stop = {"exec": {"command": ["sh", "-c", "echo prestop >> /out/log"]}}
    pod = pod_manifest(
        "grace",
        ["sh", "-c", script],
        terminationGracePeriodSeconds=3,
        volumes=[{"name": "out", "hostPath": {"path": str(tmp_path), "type": "Directory"}}],
        container={
            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            "lifecycle": {"preStop": pre_stop},
        },
    )
    p = await run_pod(cluster, ns, pod)
    uid = p["metadata"]["uid"]
    await cluster.kubectl("delete", "pod", "grace", "-n", ns, "--timeout=60s")
    lines = (tmp_path / "log").read_text().split()
    assert lines[:2] == ["prestop", "term"], lines  # the hook, then TERM (ignored: killed later)
    sandboxes = await cluster.rt.list_pod_sandbox(
        messages.sandbox_filter(labels={common.POD_UID_LABEL: uid})
    )
    assert sandboxes == []


async def test_configmap_volume_follows_updates(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": ns},
          "data": {"greeting": "hello"}}  # fmt: skip
    await cluster.apply(cm)
    pod = pod_manifest(
        "cm",
        ["sleep", "3600"],
        volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}],
        container={"volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]},
    )
    p = await run_pod(cluster, ns, pod)
    assert await exec_in(cluster, p, ["cat", "/etc/cfg/greeting"]) == (0, "hello")
    cm["data"] = {"greeting": "bonjour", "extra": "1"}
    await cluster.apply(cm)

    async def updated() -> bool:
        return await exec_in(cluster, p, ["cat", "/etc/cfg/greeting", "/etc/cfg/extra"]) == (
            0,
            "bonjour1",
        )

    await wait_until(updated, 30.0, "the new configMap contents in the container")
    code, out = await exec_in(cluster, p, ["readlink", "/etc/cfg/..data"])
    assert code == 0 and out.startswith("..")  # the atomic writer's layout


async def test_environment_and_volumes(cluster: Cluster, tmp_path: Path) -> None:
    ns = await cluster.namespace()
    await cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "env", "namespace": ns},
                         "data": {"COLOR": "blue", "size": "L"}})  # fmt: skip
    await cluster.apply({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "pw", "namespace": ns},
                         "data": {"password": base64.b64encode(b"s3cret").decode()}})  # fmt: skip
    await cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "default", "namespace": ns}})  # fmt: skip
    container = {
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                               "divisor": "1Mi"}}},
            {"name": "SIZE", "valueFrom": {"configMapKeyRef": {"name": "env", "key": "size"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "password"}}},
            {"name": "GREETING", "value": "hi $(POD_NAME) $$(NOT)"},
        ],
        "envFrom": [{"configMapRef": {"name": "env"}, "prefix": "CM_"}],
        "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
        "volumeMounts": [
            {"name": "secret", "mountPath": "/etc/secret"},
            {"name": "info", "mountPath": "/etc/info"},
            {"name": "token", "mountPath": "/var/run/token"},
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "host", "mountPath": "/host"},
        ],
    }  # fmt: skip
    volumes = [
        {"name": "secret", "secret": {"secretName": "pw", "defaultMode": 0o400}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "token", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "test"}},
            {"configMap": {"name": "env", "items": [{"key": "COLOR", "path": "color"}]}}]}},
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        {"name": "host", "hostPath": {"path": str(tmp_path / "made"), "type": "DirectoryOrCreate"}},
    ]  # fmt: skip
    pod = pod_manifest("env", ["sleep", "3600"], volumes=volumes, container=container,
                       metadata={"labels": {"app": "env"}})  # fmt: skip
    p = await run_pod(cluster, ns, pod)
    code, out = await exec_in(cluster, p, ["env"])
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["POD_NAME"] == "env" and env["POD_IP"] == p["status"]["podIP"]
    assert (env["MEM"], env["SIZE"], env["PASSWORD"]) == ("64", "L", "s3cret")
    assert env["GREETING"] == "hi env $(NOT)"
    assert (env["CM_COLOR"], env["CM_size"]) == ("blue", "L")
    assert await exec_in(cluster, p, ["cat", "/etc/secret/password"]) == (0, "s3cret")
    assert await exec_in(cluster, p, ["stat", "-L", "-c", "%a", "/etc/secret/password"]) == (
        0,
        "400\n",
    )
    assert await exec_in(cluster, p, ["cat", "/etc/info/labels"]) == (0, 'app="env"')
    assert await exec_in(cluster, p, ["cat", "/var/run/token/color"]) == (0, "blue")
    code, token = await exec_in(cluster, p, ["cat", "/var/run/token/token"])
    assert code == 0 and token.count(".") == 2  # a JWT from the TokenRequest API
    code, mounts = await exec_in(cluster, p, ["cat", "/proc/mounts"])
    assert any(line.split()[1:3] == ["/scratch", "tmpfs"] for line in mounts.splitlines())
    assert await exec_in(cluster, p, ["sh", "-c", "echo x > /host/f"]) == (0, "")
    assert (tmp_path / "made" / "f").read_text() == "x\n"
    cgroup = await exec_in(cluster, p, ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
    assert cgroup == (0, f"{64 * 1024 * 1024}\n")


async def test_init_containers_run_in_order(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    pod = pod_manifest(
        "init",
        ["sleep", "3600"],
        volumes=[{"name": "work", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        initContainers=[
            {"name": f"step{i}", "image": "kybern.local/busybox:1",
             "command": ["sh", "-c", f"echo {i} >> /work/steps"],
             "volumeMounts": [{"name": "work", "mountPath": "/work"}]}
            for i in (1, 2)
        ],
    )  # fmt: skip
    p = await run_pod(cluster, ns, pod)
    inits = p["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]
    assert await exec_in(cluster, p, ["cat", "/work/steps"]) == (0, "1\n2\n")


@pytest.mark.parametrize(
    ("policy", "code", "phase"),
    [("Never", 0, "Succeeded"), ("Never", 1, "Failed"), ("OnFailure", 0, "Succeeded")],
)
async def test_restart_policy_ends_the_pod(
    cluster: Cluster, policy: str, code: int, phase: str
) -> None:
    ns = await cluster.namespace()
    pod = pod_manifest("job", ["sh", "-c", f"exit {code}"], restartPolicy=policy)
    await cluster.apply(in_namespace(pod, ns))
    p = await cluster.wait_pod(ns, "job", lambda p: p["status"].get("phase") == phase)
    cs = container_status(p)
    assert cs["state"]["terminated"]["exitCode"] == code and cs["restartCount"] == 0

    async def sandbox_stopped() -> bool:  # a finished pod gives its address back
        sbs = await cluster.rt.list_pod_sandbox(
            messages.sandbox_filter(labels={common.POD_UID_LABEL: p["metadata"]["uid"]})
        )
        return bool(sbs) and all(s.state == 1 for s in sbs)  # SANDBOX_NOTREADY

    await wait_until(sandbox_stopped, 30.0, "the sandbox to stop")


async def test_active_deadline_fails_the_pod(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    await cluster.apply(in_namespace(pod_manifest("late", ["sleep", "3600"],
                                                  activeDeadlineSeconds=2), ns))  # fmt: skip
    p = await cluster.wait_pod(ns, "late", lambda p: p["status"].get("phase") == "Failed")
    assert p["status"]["reason"] == "DeadlineExceeded"
    assert "terminated" in container_status(p)["state"]


async def test_readiness_probe_over_http(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    pod = pod_manifest(
        "ready",
        ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && httpd -f -p 8080 -h /www"],
        container={
            "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080},
                               "periodSeconds": 1, "failureThreshold": 1},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        },
    )  # fmt: skip
    await cluster.apply(in_namespace(pod, ns))
    p = await cluster.wait_pod(ns, "ready", is_ready, what="readiness")
    await exec_in(cluster, p, ["rm", "/www/index.html"])
    p = await cluster.wait_pod(ns, "ready", lambda p: not is_ready(p), what="unreadiness")
    assert container_status(p)["restartCount"] == 0  # the TCP liveness probe still passes
    assert is_running(p)


async def test_missing_image_waits_with_a_pull_error(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    pod = pod_manifest("noimg", ["true"], image="127.0.0.1:1/none:1")
    await cluster.apply(in_namespace(pod, ns))

    def pull_error(p: Obj) -> bool:
        waiting = container_status(p).get("state", {}).get("waiting", {})
        return waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff")

    p = await cluster.wait_pod(ns, "noimg", pull_error, what="a pull error")
    assert p["status"]["phase"] == "Pending"


async def test_agent_keeps_node_status(cluster: Cluster) -> None:
    node = await cluster.node_obj()
    st = node["status"]
    assert int(st["capacity"]["pods"]) == 110 and int(st["capacity"]["cpu"]) >= 1
    assert st["allocatable"]["memory"].endswith("Ki")
    info = st["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert info["kubeletVersion"].startswith("v1.") and info["operatingSystem"] == "linux"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    assert any("kybern.local/busybox:1" in i["names"] for i in st["images"])
    lease = await cluster.client.get(common.LEASES, cluster.node, common.LEASE_NAMESPACE)
    assert lease["spec"]["holderIdentity"] == cluster.node


async def test_pull_from_a_registry_with_policy_always_and_a_pull_secret(cluster: Cluster) -> None:
    def build() -> oci.Image:
        layer = busybox.base_layer(busybox.read_busybox())
        return oci.build_image("pulled", [layer], cmd=["sh"], labels={"test": "agent-pull"})

    image = await asyncio.to_thread(build)
    async with registry.LocalRegistry() as reg:
        await reg.push(image, "kybern/pulled", "1")
        await cluster.ctd.add_registry_host(reg.host)
        ns = await cluster.namespace()
        auths = {"auths": {reg.host: {"username": "u", "password": "p"}}}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "regcred", "namespace": ns},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(auths).encode()).decode()},
        }
        await cluster.apply(secret)
        ref = f"{reg.host}/kybern/pulled:1"
        pod = pod_manifest(
            "pulled",
            ["sleep", "3600"],
            image=ref,
            imagePullSecrets=[{"name": "regcred"}],
            container={"imagePullPolicy": "Always"},
        )
        p = await run_pod(cluster, ns, pod)
        assert container_status(p)["imageID"] == f"{reg.host}/kybern/pulled@{image.digest}"
        events = (await cluster.client.list(EVENTS, ns)).get("items") or []
        assert any(e["reason"] == "Pulling" and ref in e["message"] for e in events)
        await cluster.kubectl("delete", "pod", "pulled", "-n", ns, "--timeout=60s")
        await cluster.rt.remove_image(ref)


async def test_termination_messages_and_post_start_hook(cluster: Cluster, tmp_path: Path) -> None:
    ns = await cluster.namespace()
    done = pod_manifest(
        "msg",
        ["sh", "-c", "echo all done > /dev/termination-log; exit 4"],
        restartPolicy="Never",
    )
    logs = pod_manifest(
        "fallback",
        ["sh", "-c", "echo line1; echo last words; exit 5"],
        restartPolicy="Never",
        container={"terminationMessagePolicy": "FallbackToLogsOnError"},
    )
    hook = pod_manifest(
        "hook",
        ["sleep", "3600"],
        volumes=[{"name": "out", "hostPath": {"path": str(tmp_path), "type": "Directory"}}],
        container={
            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo up > /out/hook"]}}},
        },
    )
    for pod in (done, logs, hook):
        await cluster.apply(in_namespace(pod, ns))
    failed = await cluster.wait_pod(ns, "msg", lambda p: p["status"].get("phase") == "Failed")
    term = container_status(failed)["state"]["terminated"]
    assert (term["exitCode"], term["message"]) == (4, "all done\n")
    failed = await cluster.wait_pod(ns, "fallback", lambda p: p["status"].get("phase") == "Failed")
    assert container_status(failed)["state"]["terminated"]["message"] == "line1\nlast words"
    await cluster.wait_pod(ns, "hook", is_running)
    assert (tmp_path / "hook").read_text() == "up\n"
