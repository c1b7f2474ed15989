"""A CRD's life through the real kubectl: `apply` of the CRD and of custom resources (with
kubectl's default client-side validation against our OpenAPI), `get` with the printer columns
and short names, `explain` on a custom resource field, `scale` through the CRD's scale paths,
errors worded like Kubernetes', and `delete crd` taking the custom resources with it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml
from conftest import Server, unique, wait_for
from test_crd_support import crd_body, established


@pytest.fixture
def group(server: Server) -> Iterator[str]:
    g = f"{unique('k')}.example.com"
    server.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd_body(g)))
    established(server, f"widgets.{g}")
    yield g
    server.kubectl("delete", "crd", f"widgets.{g}", "--wait=false", check=False)


def cr(group: str, name: str, **spec: object) -> str:
    return yaml.safe_dump(
        {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
    )


def test_apply_get_explain_scale_delete(server: Server, group: str, ns: str) -> None:
    kubectl = server.kubectl
    # kubectl's discovery cache may predate the CRD: it refreshes on a miss, retry until seen
    wait_for(
        lambda: (
            kubectl(
                "apply", "-n", ns, "-f", "-", input=cr(group, "a", replicas=2), check=False
            ).returncode
            == 0
        ),
        message="kubectl to apply the custom resource",
    )
    kubectl("apply", "-n", ns, "-f", "-", input=cr(group, "b", color="blue"))
    out = kubectl("get", f"widgets.{group}", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "REPLICAS", "COLOR", "PHASE"]
    assert [line.split() for line in out[1:]] == [["a", "2", "red"], ["b", "1", "blue"]]
    short = kubectl("get", "widx", "-n", ns, "-o", "name").stdout.split()
    assert short == [f"widget.{group}/a", f"widget.{group}/b"]
    explained = kubectl("explain", f"widgets.{group}.spec.replicas").stdout
    assert "How many widgets to run." in explained and "<integer>" in explained

    bad = kubectl("apply", "-n", ns, "-f", "-", input=cr(group, "c", replicas=11), check=False)
    assert bad.returncode != 0
    assert (
        "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"
        in bad.stderr
    )
    bad = kubectl("apply", "-n", ns, "-f", "-", input=cr(group, "c", replicas=7), check=False)
    assert 'spec: Invalid value: "object": replicas above max' in bad.stderr

    kubectl("scale", f"widgets.{group}/a", "-n", ns, "--replicas=4")
    got = json.loads(kubectl("get", f"widgets.{group}", "a", "-n", ns, "-o", "json").stdout)
    assert got["spec"]["replicas"] == 4

    kubectl("delete", "crd", f"widgets.{group}")  # waits until the CRD is gone
    gone = kubectl("get", "crd", f"widgets.{group}", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    r = server.http().get(f"{server.url}/apis/{group}/v1/namespaces/{ns}/widgets")
    assert r.status_code == 404
