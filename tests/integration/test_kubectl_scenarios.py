"""Everyday kubectl scenarios, with default flags, against a `kybern server` that runs its
controllers, its scheduler and two simulated nodes: rollouts (`create deployment`,
`rollout status|history|undo`, `set image|env|resources`, `scale`), `wait` (condition, delete,
jsonpath), `edit` through $EDITOR, `diff -f` (server-side dry-run), `get --raw`,
`api-resources -o wide`, `explain --recursive`, `auth can-i`, `create token`,
`label/annotate --overwrite`, `get -o wide` and `describe deployment`.

The expected outputs are what kubectl prints against a real cluster: headers, messages and exit
codes are compared exactly; ages, generated names and IPs by pattern. Waiting is done by
kubectl itself (`rollout status`, `wait`, both with a deadline) or by `wait_for`."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import KUBECTL, Server, kubectl_env, running_server, unique, wait_for

DEADLINE = "90s"  # kubectl's own --timeout for rollouts and waits
AGE = re.compile(r"^\d+[smh]\d*[sm]?$")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(args=("--sim-nodes", "2")) as srv:
        wait_for(
            lambda: len(srv.kubectl_json("get", "nodes")["items"]) == 2,
            60,
            message="two simulated nodes",
        )
        yield srv


# ---- helpers ---------------------------------------------------------------------------------


def kc(server: Server, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return server.kubectl("-n", ns, *args, check=check, timeout=120)


def out(server: Server, ns: str, *args: str) -> str:
    return kc(server, ns, *args).stdout


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """kubectl's table output as (headers, rows), the cells cut at the header columns."""
    lines = [line for line in text.splitlines() if line.strip()]
    found = list(re.finditer(r"\S+(?: \S+)*", lines[0]))
    starts = [m.start() for m in found]
    rows = []
    for line in lines[1:]:
        ends = [*starts[1:], max(len(line), starts[-1]) + 1]
        rows.append([line[a:b].strip() for a, b in zip(starts, ends, strict=True)])
    return [m.group(0) for m in found], rows


def rolled_out(server: Server, ns: str, name: str) -> None:
    """`kubectl rollout status` until done: progress lines, then the success line."""
    lines = out(server, ns, "rollout", "status", f"deployment/{name}", f"--timeout={DEADLINE}")
    lines_ = lines.strip().splitlines()
    assert lines_[-1] == f'deployment "{name}" successfully rolled out', lines
    for line in lines_[:-1]:
        assert line == "Waiting for deployment spec update to be observed..." or line.startswith(
            f'Waiting for deployment "{name}" rollout to finish: '
        ), lines


def deployment(server: Server, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = server.kubectl_json("-n", ns, "get", "deployment", name)
    return obj


def container(server: Server, ns: str, name: str) -> dict[str, Any]:
    c: dict[str, Any] = deployment(server, ns, name)["spec"]["template"]["spec"]["containers"][0]
    return c


def history(server: Server, ns: str, name: str) -> list[list[str]]:
    text = out(server, ns, "rollout", "history", f"deployment/{name}")
    first, rest = text.split("\n", 1)
    assert first.rstrip() == f"deployment.apps/{name}", text
    headers, rows = table(rest)
    assert headers == ["REVISION", "CHANGE-CAUSE"], text
    return rows


# ---- rollouts --------------------------------------------------------------------------------


def test_deployment_rollout_lifecycle(server: Server, ns: str) -> None:
    name = "web"
    assert (
        out(server, ns, "create", "deployment", name, "--image=nginx:1.25", "--replicas=2")
        == f"deployment.apps/{name} created\n"
    )
    rolled_out(server, ns, name)

    assert (
        out(server, ns, "set", "image", f"deployment/{name}", "nginx=nginx:1.26")
        == f"deployment.apps/{name} image updated\n"
    )
    rolled_out(server, ns, name)
    assert history(server, ns, name) == [["1", "<none>"], ["2", "<none>"]]

    # the change-cause of the deployment is copied onto its current replica set
    kc(
        server,
        ns,
        "annotate",
        f"deployment/{name}",
        "kubernetes.io/change-cause=bump",
        "--overwrite",
    )
    wait_for(
        lambda: history(server, ns, name) == [["1", "<none>"], ["2", "bump"]],
        60,
        message="the change-cause on revision 2",
    )
    detail = out(server, ns, "rollout", "history", f"deployment/{name}", "--revision=2")
    assert detail.startswith(f"deployment.apps/{name} with revision #2\nPod Template:\n"), detail
    assert re.search(r"^\s+Image:\s+nginx:1\.26$", detail, re.M), detail

    assert (
        out(server, ns, "rollout", "undo", f"deployment/{name}")
        == f"deployment.apps/{name} rolled back\n"
    )
    rolled_out(server, ns, name)
    assert container(server, ns, name)["image"] == "nginx:1.25"
    # revision 1 comes back as revision 3, with the annotations of its replica set
    assert history(server, ns, name) == [["2", "bump"], ["3", "<none>"]]
    assert (
        deployment(server, ns, name)["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        == "3"
    )

    assert (
        out(server, ns, "scale", f"deployment/{name}", "--replicas=3")
        == f"deployment.apps/{name} scaled\n"
    )
    rolled_out(server, ns, name)
    assert (
        out(
            server,
            ns,
            "wait",
            "--for=condition=Available",
            f"deployment/{name}",
            f"--timeout={DEADLINE}",
        )
        == f"deployment.apps/{name} condition met\n"
    )
    status = deployment(server, ns, name)["status"]
    assert (status["replicas"], status["readyReplicas"], status["availableReplicas"]) == (3, 3, 3)

    assert (
        out(server, ns, "set", "env", f"deployment/{name}", "FOO=bar")
        == f"deployment.apps/{name} env updated\n"
    )
    assert (
        out(
            server,
            ns,
            "set",
            "resources",
            f"deployment/{name}",
            "-c=nginx",
            "--limits=cpu=200m,memory=512Mi",
            "--requests=cpu=100m",
        )
        == f"deployment.apps/{name} resource requirements updated\n"
    )
    rolled_out(server, ns, name)
    c = container(server, ns, name)
    assert c["env"] == [{"name": "FOO", "value": "bar"}]
    assert c["resources"] == {
        "limits": {"cpu": "200m", "memory": "512Mi"},
        "requests": {"cpu": "100m"},
    }
    assert [r[0] for r in history(server, ns, name)] == ["2", "3", "4", "5"]

    # get -o wide: the deployment's and its pods' wide columns
    headers, rows = table(out(server, ns, "get", "deployment", name, "-o", "wide"))
    assert headers == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert len(rows) == 1
    row = rows[0]
    assert row[:4] == [name, "3/3", "3", "3"] and AGE.match(row[4]), row
    assert row[5:] == ["nginx", "nginx:1.25", "app=web"]

    wait_for(
        lambda: len(server.kubectl_json("-n", ns, "get", "pods", "-l", "app=web")["items"]) == 3,
        60,
        message="the old pods gone",
    )
    headers, rows = table(out(server, ns, "get", "pods", "-l", "app=web", "-o", "wide"))
    assert headers == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    assert len(rows) == 3
    for r in rows:
        assert re.fullmatch(r"web-[a-z0-9]{1,10}-[a-z0-9]{5}", r[0]), r
        assert r[1:4] == ["1/1", "Running", "0"] and AGE.match(r[4]), r
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", r[5]), r
        assert r[6] in ("sim-0", "sim-1") and r[7:] == ["<none>", "<none>"], r

    # describe: the usual sections, and the controller's events at the end
    text = out(server, ns, "describe", "deployment", name)
    for label, value in (
        ("Name", name),
        ("Namespace", ns),
        ("Selector", "app=web"),
        ("Replicas", "3 desired | 3 updated | 3 total | 3 available | 0 unavailable"),
        ("StrategyType", "RollingUpdate"),
        ("RollingUpdateStrategy", "25% max unavailable, 25% max surge"),
    ):
        assert re.search(rf"^{label}:\s+{re.escape(value)}$", text, re.M), (label, text)
    assert re.search(
        r"^Conditions:\n  Type\s+Status\s+Reason\n  ----\s+------\s+------\n"
        r"  Available\s+True\s+MinimumReplicasAvailable\n"
        r"  Progressing\s+True\s+NewReplicaSetAvailable$",
        text,
        re.M,
    ), text
    assert re.search(r"^NewReplicaSet:\s+web-[a-z0-9]+ \(3/3 replicas created\)$", text, re.M)
    events = text.split("\nEvents:\n", 1)
    assert len(events) == 2, text
    headers, rows = table(events[1])
    assert headers == ["Type", "Reason", "Age", "From", "Message"], events[1]
    assert rows[0] == ["----", "------", "----", "----", "-------"]
    assert any(
        r[:2] == ["Normal", "ScalingReplicaSet"]
        and r[3] == "deployment-controller"
        and re.search(r"Scaled (up|down) replica set web-[a-z0-9]+ from \d+ to \d+", r[4])
        for r in rows[1:]
    ), events[1]


# ---- wait ------------------------------------------------------------------------------------


def held_pod(server: Server, ns: str, name: str) -> None:
    """A pod kept by a finalizer, then deleted: it stays, with a deletionTimestamp."""
    kc(
        server,
        ns,
        "run",
        name,
        "--image=busybox",
        "--restart=Never",
        '--overrides={"metadata":{"finalizers":["example.com/hold"]}}',
    )
    assert out(server, ns, "delete", "pod", name, "--wait=false") == f'pod "{name}" deleted\n'


def test_wait_for_jsonpath_and_delete(server: Server, ns: str, tmp_path: Path) -> None:
    assert (
        out(server, ns, "run", "p1", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
        == "pod/p1 created\n"
    )
    assert (
        out(
            server,
            ns,
            "wait",
            "--for=jsonpath={.status.phase}=Running",
            "pod/p1",
            f"--timeout={DEADLINE}",
        )
        == "pod/p1 condition met\n"
    )

    held_pod(server, ns, "p2")
    # the finalizer holds it: the wait times out (the outcome does not depend on timing; under
    # 1s client-go may also warn of a "very short watch" when its own deadline cuts the watch)
    r = kc(server, ns, "wait", "--for=delete", "pod/p2", "--timeout=2s", check=False)
    assert (r.returncode, r.stdout) == (1, "")
    # (client-go may log its watch being cut by the deadline first: klog lines, I/W/E+date)
    *logs, last = r.stderr.splitlines()
    assert last == "error: timed out waiting for the condition on pods/p2", r.stderr
    assert all(re.match(r"[IWE]\d{4} ", line) for line in logs), r.stderr

    # a waiter that has seen the pod and watches it is released when the finalizer goes
    err_path = tmp_path / "wait.err"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [KUBECTL, "-n", ns, "wait", "--for=delete", "pod/p2", f"--timeout={DEADLINE}", "-v=6"],
            env=kubectl_env(server.kubeconfig),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        wait_for(lambda: "watch=true" in err_path.read_text(), 60, message="kubectl's watch")
        kc(
            server,
            ns,
            "patch",
            "pod",
            "p2",
            "--type=json",
            "-p",
            '[{"op":"remove","path":"/metadata/finalizers"}]',
        )
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, stdout) == (0, "pod/p2 condition met\n")

    # gone already: nothing to wait for, and no error
    r = kc(server, ns, "wait", "--for=delete", "pod/p2", "--timeout=10s", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    # no such object for a condition: an error
    r = kc(server, ns, "wait", "--for=condition=Ready", "pod/nope", "--timeout=5s", check=False)
    assert r.returncode == 1
    assert r.stderr == 'Error from server (NotFound): pods "nope" not found\n'


# ---- edit and diff ---------------------------------------------------------------------------


def test_edit_with_editor_script(server: Server, ns: str, tmp_path: Path) -> None:
    kc(server, ns, "create", "configmap", "cfg", "--from-literal=mode=blue")
    script = tmp_path / "editor.sh"
    script.write_text("#!/bin/sh\nsed -i 's/mode: blue/mode: green/' \"$1\"\n")
    script.chmod(0o755)
    env = {**os.environ, "KUBECONFIG": str(server.kubeconfig), "EDITOR": str(script)}
    r = subprocess.run(
        [KUBECTL, "-n", ns, "edit", "configmap/cfg"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (r.returncode, r.stdout) == (0, "configmap/cfg edited\n"), r.stderr
    assert server.kubectl_json("-n", ns, "get", "configmap", "cfg")["data"] == {"mode": "green"}

    # an editor that changes nothing
    r = subprocess.run(
        [KUBECTL, "-n", ns, "edit", "configmap/cfg"],
        env={**env, "EDITOR": "true"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "Edit cancelled, no changes made.\n")


def test_diff_uses_server_side_dry_run(server: Server, ns: str, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"

    def write(value: str) -> None:
        manifest.write_text(
            "apiVersion: v1\nkind: ConfigMap\n"
            f'metadata:\n  name: settings\n  namespace: {ns}\ndata:\n  a: "{value}"\n'
        )

    write("1")
    # not there yet: all of it is new
    r = kc(server, ns, "diff", "-f", str(manifest), check=False)
    assert r.returncode == 1, r.stderr
    assert re.search(r"^\+  a: \"1\"$", r.stdout, re.M), r.stdout
    with pytest.raises(AssertionError):
        server.kubectl("-n", ns, "get", "configmap", "settings")  # dry-run created nothing

    kc(server, ns, "apply", "-f", str(manifest))
    r = kc(server, ns, "diff", "-f", str(manifest), check=False)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")

    write("2")
    r = kc(server, ns, "diff", "-f", str(manifest), check=False)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert re.fullmatch(
        rf"diff -u -N \S+/LIVE-\d+/v1\.ConfigMap\.{ns}\.settings "
        rf"\S+/MERGED-\d+/v1\.ConfigMap\.{ns}\.settings",
        lines[0],
    ), r.stdout
    assert lines[1].startswith("--- ") and lines[2].startswith("+++ "), r.stdout
    assert '-  a: "1"' in lines and '+  a: "2"' in lines, r.stdout
    # generation and managedFields changes are not part of the diff
    assert not any("generation" in x or "managedFields" in x for x in lines[3:]), r.stdout
    assert server.kubectl_json("-n", ns, "get", "configmap", "settings")["data"] == {"a": "1"}


# ---- labels and annotations ------------------------------------------------------------------


def test_label_and_annotate_overwrite(server: Server, ns: str) -> None:
    kc(server, ns, "create", "configmap", "lab")
    assert out(server, ns, "label", "configmap", "lab", "tier=front") == "configmap/lab labeled\n"
    r = kc(server, ns, "label", "configmap", "lab", "tier=back", check=False)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "error: 'tier' already has a value (front), and --overwrite is false\n"
    assert (
        out(server, ns, "label", "configmap", "lab", "tier=back", "--overwrite")
        == "configmap/lab labeled\n"
    )
    assert (
        out(server, ns, "label", "configmap", "lab", "tier=back", "--overwrite")
        == "configmap/lab not labeled\n"
    )
    assert out(server, ns, "label", "configmap", "lab", "tier-") == "configmap/lab unlabeled\n"

    assert out(server, ns, "annotate", "configmap", "lab", "note=a") == "configmap/lab annotated\n"
    r = kc(server, ns, "annotate", "configmap", "lab", "note=b", check=False)
    assert r.returncode == 1
    assert (
        r.stderr == "error: --overwrite is false but found the following declared annotation(s): "
        "'note' already has a value (a)\n"
    )
    assert (
        out(server, ns, "annotate", "configmap", "lab", "note=b", "--overwrite")
        == "configmap/lab annotated\n"
    )
    meta = server.kubectl_json("-n", ns, "get", "configmap", "lab")["metadata"]
    assert "tier" not in meta.get("labels", {}) and meta["annotations"] == {"note": "b"}


# ---- API-level commands ----------------------------------------------------------------------


def test_get_raw(server: Server) -> None:
    version = json.loads(server.kubectl("get", "--raw", "/version").stdout)
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.")
    assert server.kubectl("get", "--raw", "/healthz").stdout == "ok"
    ns = json.loads(server.kubectl("get", "--raw", "/api/v1/namespaces/default").stdout)
    assert (ns["apiVersion"], ns["kind"], ns["metadata"]["name"]) == ("v1", "Namespace", "default")
    groups = json.loads(server.kubectl("get", "--raw", "/apis").stdout)
    assert groups["kind"] == "APIGroupList"
    assert "apps" in [g["name"] for g in groups["groups"]]
    r = server.kubectl("get", "--raw", "/api/v1/namespaces/nope-nope", check=False)
    assert r.returncode == 1
    assert r.stderr == 'Error from server (NotFound): namespaces "nope-nope" not found\n'


def test_api_resources_wide(server: Server) -> None:
    headers, rows = table(server.kubectl("api-resources", "-o", "wide").stdout)
    assert headers == [
        "NAME",
        "SHORTNAMES",
        "APIVERSION",
        "NAMESPACED",
        "KIND",
        "VERBS",
        "CATEGORIES",
    ]
    by_name = {(r[0], r[2]): r for r in rows}
    verbs = "create,delete,deletecollection,get,list,patch,update,watch"
    assert by_name[("pods", "v1")] == ["pods", "po", "v1", "true", "Pod", verbs, "all"]
    assert by_name[("deployments", "apps/v1")] == [
        "deployments",
        "deploy",
        "apps/v1",
        "true",
        "Deployment",
        verbs,
        "all",
    ]
    assert by_name[("namespaces", "v1")][:5] == ["namespaces", "ns", "v1", "false", "Namespace"]
    assert by_name[("selfsubjectaccessreviews", "authorization.k8s.io/v1")][5] == "create"


def test_explain_recursive(server: Server) -> None:
    text = server.kubectl("explain", "deployment", "--recursive").stdout
    assert text.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n"), text[:200]
    assert "\nFIELDS:\n" in text
    for field in (
        "  apiVersion\t<string>",
        "    replicas\t<integer>",
        "  status\t<DeploymentStatus>",
    ):
        assert field in text.splitlines(), field
    text = server.kubectl("explain", "pods.spec.containers.image").stdout
    assert "FIELD: image <string>" in text


def test_auth_can_i(server: Server) -> None:
    r = server.kubectl("auth", "can-i", "create", "pods")
    assert (r.returncode, r.stdout) == (0, "yes\n")
    assert server.kubectl("auth", "can-i", "list", "secrets", "-n", "kube-system").stdout == "yes\n"
    assert server.kubectl("auth", "can-i", "*", "*", "--all-namespaces").stdout == "yes\n"


def test_create_token(server: Server, ns: str) -> None:
    wait_for(
        lambda: kc(server, ns, "get", "serviceaccount", "default", check=False).returncode == 0,
        60,
        message="the default service account",
    )
    token = out(server, ns, "create", "token", "default", "--duration=10m").strip()
    parts = token.split(".")
    assert len(parts) == 3 and all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts), token

    def b64(part: str) -> Any:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    header, claims = b64(parts[0]), b64(parts[1])
    assert header["alg"] in ("RS256", "ES256")
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["kubernetes.io"]["namespace"] == ns
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "default"

    missing = unique("nosa")
    r = kc(server, ns, "create", "token", missing, check=False)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f'error: failed to create token: serviceaccounts "{missing}" not found\n'
