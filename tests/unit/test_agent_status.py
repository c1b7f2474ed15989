"""The agent's pod status computation without a runtime: container statuses from runtime
records (running, exited, waiting with the worker's reason, lastState, restart counts, readiness
from probes), kubelet's phase rules for every restart policy and for init containers, conditions
with stable transition times, QoS classes, the CrashLoopBackOff schedule and the merge patch the
agent writes (none when nothing changed)."""

from __future__ import annotations

from typing import Any

import pytest

from kybern.agent import backoff, common, pods, runtime, status

Obj = dict[str, Any]
S = 1_000_000_000  # ns per second
T0 = 1_700_000_000


def pod(containers: list[str] = ("main",), inits: list[str] = (), **spec: Any) -> Obj:  # type: ignore[assignment]
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "containers": [{"name": n, "image": "img"} for n in containers],
            "initContainers": [{"name": n, "image": "img"} for n in inits],
            **spec,
        },
        "status": spec.pop("status", {}),
    }


def c(
    name: str,
    state: int,
    *,
    cid: str = "",
    created: int = 1,
    exit_code: int = 0,
    restarts: int = 0,
    kind: str = "app",
    sandbox: str = "s1",
) -> runtime.ContainerInfo:
    return runtime.ContainerInfo(
        id=cid or f"{name}-{created}",
        sandbox_id=sandbox,
        name=name,
        attempt=restarts,
        state=state,
        created_at=(T0 + created) * S,
        started_at=(T0 + created) * S,
        finished_at=(T0 + created + 1) * S if state == runtime.EXITED else 0,
        exit_code=exit_code,
        image_ref="sha256:i",
        annotations={
            common.RESTART_COUNT: str(restarts),
            common.CONTAINER_KIND: kind,
        },
    )


def rt(*conts: runtime.ContainerInfo, ready: bool = True) -> runtime.PodRuntime:
    sb = runtime.SandboxInfo("s1", 0, 0 if ready else 1, ips=["10.244.0.9"])
    return runtime.PodRuntime("u", [sb], sorted(conts, key=lambda x: x.created_at, reverse=True))


def inputs(**kw: Any) -> status.Inputs:
    return status.Inputs(now=T0 + 100, host_ips=["192.0.2.1"], **kw)


def conditions(st: Obj) -> dict[str, str]:
    return {x["type"]: x["status"] for x in st["conditions"]}


def test_a_running_pod() -> None:
    st = status.pod_status(pod(), rt(c("main", runtime.RUNNING)), inputs())
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.244.0.9" and st["podIPs"] == [{"ip": "10.244.0.9"}]
    assert st["hostIP"] == "192.0.2.1" and st["qosClass"] == "BestEffort"
    assert conditions(st) == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    cs = st["containerStatuses"][0]
    assert cs["state"] == {"running": {"startedAt": common.rfc3339(T0 + 1)}}
    assert cs["containerID"] == "containerd://main-1" and cs["imageID"] == "sha256:i"
    assert cs["ready"] and cs["started"] and cs["lastState"] == {}


def test_probes_decide_ready_and_started() -> None:
    p = pod()
    p["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}}
    p["spec"]["containers"][0]["startupProbe"] = {"exec": {"command": ["true"]}}
    r = rt(c("main", runtime.RUNNING))
    st = status.pod_status(p, r, inputs())
    cs = st["containerStatuses"][0]
    assert not cs["started"] and not cs["ready"] and conditions(st)["Ready"] == "False"
    assert st["conditions"][2]["message"] == "containers with unready status: [main]"
    st = status.pod_status(p, r, inputs(started={"main-1": True}, ready={"main-1": True}))
    assert conditions(st)["Ready"] == "True"


def test_crash_loop_waiting_with_the_last_termination() -> None:
    r = rt(
        c("main", runtime.EXITED, created=5, exit_code=3, restarts=2),
        c("main", runtime.EXITED, created=2, exit_code=3, restarts=1),
    )
    w = {"main": status.Waiting("CrashLoopBackOff", "back-off 20s restarting failed container")}
    st = status.pod_status(pod(), r, inputs(waiting=w))
    cs = st["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] == 2
    assert st["phase"] == "Running"  # restartPolicy Always


def test_restarted_container_shows_the_previous_one() -> None:
    r = rt(
        c("main", runtime.RUNNING, created=9, restarts=1),
        c("main", runtime.EXITED, created=2, exit_code=137, restarts=0),
    )
    cs = status.pod_status(pod(), r, inputs())["containerStatuses"][0]
    assert "running" in cs["state"] and cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 137


@pytest.mark.parametrize(
    ("policy", "codes", "phase"),
    [
        ("Always", [0], "Running"),
        ("Never", [0], "Succeeded"),
        ("Never", [1], "Failed"),
        ("Never", [0, 1], "Failed"),
        ("OnFailure", [0], "Succeeded"),
        ("OnFailure", [1], "Running"),
    ],
)
def test_phase_of_finished_containers(policy: str, codes: list[int], phase: str) -> None:
    names = [f"c{i}" for i in range(len(codes))]
    r = rt(*[c(n, runtime.EXITED, exit_code=code) for n, code in zip(names, codes, strict=True)])
    st = status.pod_status(pod(names, restartPolicy=policy), r, inputs())
    assert st["phase"] == phase
    if phase == "Succeeded":
        assert st["conditions"][2]["reason"] == "PodCompleted"


def test_pending_while_creating_and_initializing() -> None:
    st = status.pod_status(pod(), runtime.PodRuntime("u"), inputs())
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert "podIP" not in st and conditions(st)["PodReadyToStartContainers"] == "False"
    p = pod(["main"], ["init1", "init2"])
    r = rt(
        c("init1", runtime.EXITED, kind="init"), c("init2", runtime.RUNNING, created=3, kind="init")
    )
    st = status.pod_status(p, r, inputs())
    assert st["phase"] == "Pending" and conditions(st)["Initialized"] == "False"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert [s["ready"] for s in st["initContainerStatuses"]] == [True, False]
    init_cond = next(x for x in st["conditions"] if x["type"] == "Initialized")
    assert init_cond["message"] == "containers with incomplete status: [init2]"


def test_failed_init_container() -> None:
    r = rt(c("init1", runtime.EXITED, exit_code=1, kind="init"))
    assert (
        status.pod_status(pod(["main"], ["init1"], restartPolicy="Never"), r, inputs())["phase"]
        == "Failed"
    )
    w = {"init1": status.Waiting("CrashLoopBackOff")}
    st = status.pod_status(pod(["main"], ["init1"]), r, inputs(waiting=w))
    assert st["phase"] == "Pending"


def test_terminal_phase_is_final_and_forced_phase() -> None:
    p = pod(
        status={"phase": "Failed", "reason": "DeadlineExceeded", "podIPs": [{"ip": "10.1.1.1"}]}
    )
    st = status.pod_status(p, rt(c("main", runtime.RUNNING), ready=False), inputs())
    assert st["phase"] == "Failed" and st["reason"] == "DeadlineExceeded"
    assert st["podIP"] == "10.1.1.1"  # kept once the sandbox is gone
    forced = status.pod_status(pod(), rt(c("main", runtime.RUNNING)),
                               inputs(phase="Failed", reason="DeadlineExceeded"))  # fmt: skip
    assert forced["phase"] == "Failed" and conditions(forced)["Ready"] == "False"


def test_transition_times_and_foreign_conditions_are_kept() -> None:
    old = {
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "DisruptionTarget", "status": "True", "lastTransitionTime": "x"},
        ],
        "startTime": "2020-01-01T00:00:00Z",
        "nominatedNodeName": "n",
    }
    st = status.pod_status(pod(status=old), rt(c("main", runtime.RUNNING)), inputs())
    ready = next(x for x in st["conditions"] if x["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert any(x["type"] == "DisruptionTarget" for x in st["conditions"])
    assert st["startTime"] == "2020-01-01T00:00:00Z" and st["nominatedNodeName"] == "n"


def test_readiness_gates() -> None:
    old = {"conditions": [{"type": "example.com/gate", "status": "False"}]}
    p = pod(readinessGates=[{"conditionType": "example.com/gate"}], status=old)
    st = status.pod_status(p, rt(c("main", runtime.RUNNING)), inputs())
    assert conditions(st)["ContainersReady"] == "True" and conditions(st)["Ready"] == "False"
    assert st["conditions"][2]["reason"] == "ReadinessGatesNotReady"


def test_patch_is_minimal() -> None:
    p = pod()
    st = status.pod_status(p, rt(c("main", runtime.RUNNING)), inputs())
    assert status.status_patch(st, st) is None
    p["status"] = st
    again = status.pod_status(
        p, rt(c("main", runtime.RUNNING)), status.Inputs(now=T0 + 500, host_ips=["192.0.2.1"])
    )
    assert status.status_patch(st, again) is None  # nothing but time passed
    patch = status.status_patch({**st, "podIP": "x", "reason": "old"}, again)
    assert patch == {"podIP": "10.244.0.9", "reason": None}
    assert status.merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}) == {"a": {"c": None}}
    assert status.merge_patch({"l": [1]}, {"l": [1, 2]}) == {"l": [1, 2]}


@pytest.mark.parametrize(
    ("containers", "qos"),
    [
        ([{}], "BestEffort"),
        ([{"requests": {"cpu": "100m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}],
         "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
        ([{"requests": {"ephemeral-storage": "1Gi"}}], "BestEffort"),
    ],
)  # fmt: skip
def test_qos_class(containers: list[Obj], qos: str) -> None:
    p = {"spec": {"containers": [{"name": f"c{i}", "resources": r}
                                 for i, r in enumerate(containers)]}}  # fmt: skip
    assert common.qos_class(p) == qos


def test_crash_loop_back_off_doubles_and_resets() -> None:
    now = [1000.0]
    bo = backoff.CrashLoopBackOff(10.0, 40.0, clock=lambda: now[0])
    key = "u/app/main"
    assert bo.in_backoff(key, 999.0) == 0  # first crash: restart at once
    assert bo.restarted(key, 999.0) == 10.0
    now[0] = 1005.0
    assert bo.in_backoff(key, 1004.0) == pytest.approx(9.0)
    now[0] = 1014.0
    assert bo.in_backoff(key, 1004.0) == 0
    assert [bo.restarted(key, 1014.0 + i) for i in range(4)] == [20.0, 40.0, 40.0, 40.0]
    now[0] = 2000.0
    assert bo.in_backoff(key, 1999.0) == 0  # ran longer than twice the cap: start over
    assert bo.restarted(key, 1999.0) == 10.0
    bo.forget_prefix("u/")
    assert bo.current(key) == 10.0


def test_restart_policy_decisions() -> None:
    assert pods.should_restart("Always", 0) and pods.should_restart("Always", 1)
    assert pods.should_restart("OnFailure", 1) and not pods.should_restart("OnFailure", 0)
    assert not pods.should_restart("Never", 1)
