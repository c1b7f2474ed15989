"""The networking, scheduling, node, autoscaling, certificates, storage-capacity, admission-policy
and flow-control kinds through the real `kubectl` against a real `kybern server`: one manifest
with one object of each kind is applied, `kubectl get` prints kube-apiserver's columns for each,
`kubectl api-resources` lists them with Kubernetes' short names and scope, invalid objects get
422 Invalid with the field path Kubernetes names, the two system PriorityClasses exist, and a
CertificateSigningRequest (a real PEM CSR) is approved and denied with `kubectl certificate`,
keeps its spec, and carries the requesting user."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from conftest import Server, running_server, unique
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

AGE = re.compile(r"^\d+s$")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as srv:
        yield srv


def rest(server: Server) -> requests.Session:
    s = server.http()
    s.trust_env = False
    return s


def csr_pem(cn: str = "alice", org: str = "dev") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def csr_obj(name: str, pem: str | None = None, **spec: Any) -> dict[str, Any]:
    request = base64.b64encode((pem or csr_pem()).encode()).decode()
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": request,
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
            **spec,
        },
    }


def manifest(ns: str, sfx: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": f"nginx-{sfx}"},
            "spec": {
                "controller": "k8s.io/ingress-nginx",
                "parameters": {
                    "apiGroup": "k8s.example.com",
                    "kind": "IngressParameters",
                    "name": "p",
                },
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "ingressClassName": f"nginx-{sfx}",
                "tls": [{"hosts": ["a.example.com"], "secretName": "tls"}],
                "rules": [
                    {
                        "host": "a.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    },
                    {
                        "host": "b.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/api",
                                    "pathType": "Exact",
                                    "backend": {
                                        "service": {"name": "api", "port": {"name": "http"}}
                                    },
                                }
                            ]
                        },
                    },
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "db", "namespace": ns},
            "spec": {
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                        "ports": [{"port": 5432}],
                    }
                ],
            },
        },
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": f"high-{sfx}"},
            "value": 1000000,
            "description": "high",
        },
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": f"gvisor-{sfx}"},
            "handler": "runsc",
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
            },
        },
        csr_obj(f"csr-{sfx}", expirationSeconds=3600),
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSIStorageCapacity",
            "metadata": {"name": "cap", "namespace": ns},
            "storageClassName": "fast",
            "capacity": "100Gi",
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": f"replicas-{sfx}"},
            "spec": {
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["deployments"],
                        }
                    ]
                },
                "validations": [{"expression": "object.spec.replicas <= 5"}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": f"replicas-{sfx}"},
            "spec": {"policyName": f"replicas-{sfx}", "validationActions": ["Deny"]},
        },
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": f"pl-{sfx}"},
            "spec": {
                "type": "Limited",
                "limited": {"limitResponse": {"type": "Queue", "queuing": {}}},
            },
        },
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": f"fs-{sfx}"},
            "spec": {
                "priorityLevelConfiguration": {"name": f"pl-{sfx}"},
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [{"kind": "Group", "group": {"name": "system:authenticated"}}],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }
                ],
            },
        },
    ]


@pytest.fixture(scope="module")
def applied(server: Server) -> dict[str, str]:
    ns, sfx = unique("more"), unique("x")[2:]
    server.kubectl("create", "namespace", ns)
    docs = yaml.safe_dump_all(manifest(ns, sfx))
    out = server.kubectl("apply", "-f", "-", input=docs).stdout
    assert out.count("created") == 12, out
    return {"ns": ns, "sfx": sfx}


def get_table(server: Server, *args: str) -> tuple[list[str], list[list[str]]]:
    """kubectl's table output: the header and rows, cut at the header's columns."""
    lines = [line for line in server.kubectl("get", *args).stdout.splitlines() if line.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [*starts[1:], None]
    rows = [[line[a:b].strip() for a, b in zip(starts, ends, strict=True)] for line in lines[1:]]
    return header.split(), rows


def row_of(rows: list[list[str]], name: str) -> list[str]:
    found = [r for r in rows if r[0] == name]
    assert len(found) == 1, rows
    return found[0]


# ---- kubectl get ----------------------------------------------------------------------------


def test_get_ingress_and_class(server: Server, applied: dict[str, str]) -> None:
    ns, sfx = applied["ns"], applied["sfx"]
    head, rows = get_table(server, "ing", "-n", ns)
    assert head == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    _, cls, hosts, address, ports, age = row_of(rows, "web")
    assert (cls, hosts, address, ports) == (
        f"nginx-{sfx}",
        "a.example.com,b.example.com",
        "",
        "80, 443",
    )
    assert AGE.match(age)
    head, rows = get_table(server, "ingressclass", f"nginx-{sfx}")
    assert head == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
    assert row_of(rows, f"nginx-{sfx}")[1:3] == [
        "k8s.io/ingress-nginx",
        "IngressParameters.k8s.example.com/p",
    ]
    stored = server.kubectl_json("get", "ingressclass", f"nginx-{sfx}")
    assert stored["spec"]["parameters"]["scope"] == "Cluster"  # defaulted


def test_get_network_policy_and_defaults(server: Server, applied: dict[str, str]) -> None:
    ns = applied["ns"]
    head, rows = get_table(server, "netpol", "-n", ns)
    assert head == ["NAME", "POD-SELECTOR", "AGE"]
    assert row_of(rows, "db")[1] == "app=db"
    np = server.kubectl_json("get", "netpol", "db", "-n", ns)
    assert np["spec"]["policyTypes"] == ["Ingress"]
    assert np["spec"]["ingress"][0]["ports"][0]["protocol"] == "TCP"


def test_get_priority_and_runtime_class(server: Server, applied: dict[str, str]) -> None:
    sfx = applied["sfx"]
    head, rows = get_table(server, "pc")
    assert head == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    assert row_of(rows, f"high-{sfx}")[1:3] == ["1000000", "false"]
    assert row_of(rows, f"high-{sfx}")[4] == "PreemptLowerPriority"
    head, rows = get_table(server, "runtimeclass", f"gvisor-{sfx}")
    assert head == ["NAME", "HANDLER", "AGE"]
    assert row_of(rows, f"gvisor-{sfx}")[1] == "runsc"


def test_get_hpa(server: Server, applied: dict[str, str]) -> None:
    ns = applied["ns"]
    head, rows = get_table(server, "hpa", "-n", ns)
    assert head == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert row_of(rows, "web")[1:6] == ["Deployment/web", "cpu: <unknown>/50%", "2", "10", "0"]
    # the status subresource feeds TARGETS and REPLICAS
    status = {
        "currentReplicas": 3,
        "desiredReplicas": 3,
        "currentMetrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "current": {"averageUtilization": 31, "averageValue": "31m"},
                },
            }
        ],
    }
    r = rest(server).patch(
        f"{server.url}/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/web/status",
        data=json.dumps({"status": status}),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    _, rows = get_table(server, "hpa", "-n", ns)
    assert row_of(rows, "web")[2] == "cpu: 31%/50%"
    assert row_of(rows, "web")[5] == "3"
    # `kubectl get all` includes autoscalers
    assert (
        "horizontalpodautoscaler.autoscaling/web" in server.kubectl("get", "all", "-n", ns).stdout
    )


def test_get_csi_capacity_policies_and_flowcontrol(server: Server, applied: dict[str, str]) -> None:
    ns, sfx = applied["ns"], applied["sfx"]
    head, rows = get_table(server, "csistoragecapacities", "-n", ns)
    assert head == ["NAME", "STORAGECLASSNAME", "CAPACITY"]
    assert row_of(rows, "cap")[1:] == ["fast", "100Gi"]
    head, rows = get_table(server, "validatingadmissionpolicies", f"replicas-{sfx}")
    assert head == ["NAME", "VALIDATIONS", "PARAMKIND", "AGE"]
    assert row_of(rows, f"replicas-{sfx}")[1:3] == ["1", "<unset>"]
    head, rows = get_table(server, "validatingadmissionpolicybindings", f"replicas-{sfx}")
    assert head == ["NAME", "POLICYNAME", "PARAMREF", "AGE"]
    assert row_of(rows, f"replicas-{sfx}")[1:3] == [f"replicas-{sfx}", "<unset>"]
    head, rows = get_table(server, "flowschemas", f"fs-{sfx}")
    assert head == [
        "NAME",
        "PRIORITYLEVEL",
        "MATCHINGPRECEDENCE",
        "DISTINGUISHERMETHOD",
        "AGE",
        "MISSINGPL",
    ]
    row = row_of(rows, f"fs-{sfx}")
    assert (row[1], row[2], row[3], row[5]) == (f"pl-{sfx}", "1000", "ByUser", "?")
    head, rows = get_table(server, "prioritylevelconfigurations", f"pl-{sfx}")
    assert head == [
        "NAME",
        "TYPE",
        "NOMINALCONCURRENCYSHARES",
        "QUEUES",
        "HANDSIZE",
        "QUEUELENGTHLIMIT",
        "AGE",
    ]
    assert row_of(rows, f"pl-{sfx}")[1:6] == ["Limited", "30", "64", "8", "50"]


def test_get_csr(server: Server, applied: dict[str, str]) -> None:
    sfx = applied["sfx"]
    head, rows = get_table(server, "csr", f"csr-{sfx}")
    assert head == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    row = row_of(rows, f"csr-{sfx}")
    assert AGE.match(row[1])
    assert row[2:] == ["kubernetes.io/kube-apiserver-client", whoami(server), "60m", "Pending"]


# ---- discovery --------------------------------------------------------------------------------


def test_api_resources(server: Server) -> None:
    out = server.kubectl("api-resources", "-o", "wide").stdout
    lines = out.splitlines()
    header = lines[0]
    cols = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    starts = [header.index(c) for c in cols]
    table = {}
    for line in lines[1:]:
        cells = [
            line[a:b].strip()
            for a, b in zip(starts, [*starts[1:], header.index("VERBS")], strict=True)
        ]
        table[(cells[0], cells[2])] = cells
    want = [
        ("ingresses", "ing", "networking.k8s.io/v1", "true", "Ingress"),
        ("ingressclasses", "", "networking.k8s.io/v1", "false", "IngressClass"),
        ("networkpolicies", "netpol", "networking.k8s.io/v1", "true", "NetworkPolicy"),
        ("priorityclasses", "pc", "scheduling.k8s.io/v1", "false", "PriorityClass"),
        ("runtimeclasses", "", "node.k8s.io/v1", "false", "RuntimeClass"),
        ("horizontalpodautoscalers", "hpa", "autoscaling/v2", "true", "HorizontalPodAutoscaler"),
        (
            "certificatesigningrequests",
            "csr",
            "certificates.k8s.io/v1",
            "false",
            "CertificateSigningRequest",
        ),
        ("csistoragecapacities", "", "storage.k8s.io/v1", "true", "CSIStorageCapacity"),
        (
            "validatingadmissionpolicies",
            "",
            "admissionregistration.k8s.io/v1",
            "false",
            "ValidatingAdmissionPolicy",
        ),
        (
            "validatingadmissionpolicybindings",
            "",
            "admissionregistration.k8s.io/v1",
            "false",
            "ValidatingAdmissionPolicyBinding",
        ),
        ("flowschemas", "", "flowcontrol.apiserver.k8s.io/v1", "false", "FlowSchema"),
        (
            "prioritylevelconfigurations",
            "",
            "flowcontrol.apiserver.k8s.io/v1",
            "false",
            "PriorityLevelConfiguration",
        ),
    ]
    for name, short, gv, namespaced, kind in want:
        assert table.get((name, gv)) == [name, short, gv, namespaced, kind], (name, out)
    names = server.kubectl("api-resources", "--categories=all", "-o", "name").stdout.split()
    assert "horizontalpodautoscalers.autoscaling" in names
    assert "ingresses.networking.k8s.io" not in names


def test_explain_and_openapi(server: Server) -> None:
    out = server.kubectl("explain", "ingress.spec.rules.http.paths.pathType").stdout
    assert "pathType" in out and "networking.k8s.io" in out
    out = server.kubectl("explain", "csr.spec.signerName").stdout
    assert "signerName" in out


def test_protobuf_list(server: Server, applied: dict[str, str]) -> None:
    r = rest(server).get(
        f"{server.url}/apis/networking.k8s.io/v1/namespaces/{applied['ns']}/ingresses",
        headers={"Accept": "application/vnd.kubernetes.protobuf"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/vnd.kubernetes.protobuf")
    assert r.content.startswith(b"k8s\x00")


# ---- validation -------------------------------------------------------------------------------


def post(server: Server, path: str, obj: dict[str, Any]) -> requests.Response:
    return rest(server).post(server.url + path, json=obj, timeout=10)


def causes(r: requests.Response) -> list[tuple[str, str]]:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["reason"] == "Invalid", body
    return [(c["field"], c["reason"]) for c in body["details"]["causes"]]


def test_invalid_objects(server: Server, applied: dict[str, str]) -> None:
    ns = applied["ns"]
    path = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "bad"},
        "spec": {
            "rules": [
                {
                    "host": "a.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "backend": {"service": {"name": "x", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    r = post(server, f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses", path)
    assert ("spec.rules[0].http.paths[0].pathType", "FieldValueRequired") in causes(r)
    big = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": unique("huge")},
        "value": 1000000001,
    }
    r = post(server, "/apis/scheduling.k8s.io/v1/priorityclasses", big)
    assert causes(r) == [("value", "FieldValueForbidden")]
    system = {**big, "metadata": {"name": "system-mine"}, "value": 10}
    r = post(server, "/apis/scheduling.k8s.io/v1/priorityclasses", system)
    assert causes(r) == [("metadata.name", "FieldValueForbidden")]
    np = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "bad"},
        "spec": {"podSelector": {}, "egress": [{"ports": [{"port": 70000, "protocol": "ICMP"}]}]},
    }
    r = post(server, f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", np)
    assert set(causes(r)) == {
        ("spec.egress[0].ports[0].protocol", "FieldValueNotSupported"),
        ("spec.egress[0].ports[0].port", "FieldValueInvalid"),
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bad"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "x"},
            "minReplicas": 5,
            "maxReplicas": 2,
        },
    }
    r = post(server, f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers", hpa)
    assert causes(r) == [("spec.maxReplicas", "FieldValueInvalid")]
    rc = {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": unique("rc")},
    }
    r = post(server, "/apis/node.k8s.io/v1/runtimeclasses", rc)
    assert causes(r) == [("handler", "FieldValueRequired")]
    # not a CSR: a certificate-shaped PEM of another type, and no signerName
    not_csr = csr_obj(
        unique("bad"), pem="-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    del not_csr["spec"]["signerName"]
    r = post(server, "/apis/certificates.k8s.io/v1/certificatesigningrequests", not_csr)
    got = causes(r)
    assert ("spec.request", "FieldValueInvalid") in got
    assert ("spec.signerName", "FieldValueRequired") in got
    assert "PEM block type must be CERTIFICATE REQUEST" in r.text


def test_priority_class_value_is_immutable(server: Server, applied: dict[str, str]) -> None:
    name = f"high-{applied['sfx']}"
    r = rest(server).patch(
        f"{server.url}/apis/scheduling.k8s.io/v1/priorityclasses/{name}",
        data=json.dumps({"value": 5}),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    )
    assert causes(r) == [("value", "FieldValueForbidden")]
    assert "may not be changed in an update." in r.text


def test_system_priority_classes(server: Server) -> None:
    got = {
        pc["metadata"]["name"]: pc["value"]
        for pc in server.kubectl_json("get", "priorityclasses")["items"]
        if pc["metadata"]["name"].startswith("system-")
    }
    assert got == {"system-cluster-critical": 2000000000, "system-node-critical": 2000001000}


# ---- certificate signing requests --------------------------------------------------------------


def whoami(server: Server) -> str:
    out = json.loads(server.kubectl("auth", "whoami", "-o", "json").stdout)
    return str(out["status"]["userInfo"]["username"])


def test_csr_approve(server: Server) -> None:
    name = unique("csr")
    body = csr_obj(name)
    body["spec"]["username"] = "mallory"  # ignored: the requester is the caller
    body["spec"]["groups"] = ["system:masters"]
    body["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}  # dropped
    r = post(server, "/apis/certificates.k8s.io/v1/certificatesigningrequests", body)
    assert r.status_code == 201, r.text
    created = r.json()
    me = whoami(server)
    assert created["spec"]["username"] == me
    assert "system:authenticated" in created["spec"]["groups"]
    assert not (created.get("status") or {}).get("conditions")
    out = server.kubectl("certificate", "approve", name).stdout
    assert f"certificatesigningrequest.certificates.k8s.io/{name} approved" in out
    csr = server.kubectl_json("get", "csr", name)
    (cond,) = csr["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Approved", "True", "KubectlApprove")
    _, rows = get_table(server, "csr", name)
    assert row_of(rows, name)[-1] == "Approved"
    proc = server.kubectl("certificate", "deny", name, "--force", check=False)
    assert proc.returncode != 0  # kubectl refuses it itself
    # the server refuses it too: Approved and Denied are mutually exclusive
    url = f"{server.url}/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
    csr["status"]["conditions"].append({"type": "Denied", "status": "True"})
    r = rest(server).put(url + "/approval", json=csr, timeout=10)
    assert causes(r) == [("status.conditions[1].type", "FieldValueInvalid")]
    assert "Approved and Denied conditions are mutually exclusive" in r.text
    # and nothing removes the approval
    csr["status"]["conditions"] = []
    r = rest(server).put(url + "/approval", json=csr, timeout=10)
    assert causes(r) == [("status.conditions", "FieldValueForbidden")]
    assert 'updates may not remove a condition of type \\"Approved\\"' in r.text


def test_csr_deny_and_status_cannot_approve(server: Server) -> None:
    name = unique("csr")
    r = post(server, "/apis/certificates.k8s.io/v1/certificatesigningrequests", csr_obj(name))
    assert r.status_code == 201, r.text
    # the status subresource cannot set approval conditions (kept from the stored object)
    current = r.json()
    current["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    url = f"{server.url}/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
    r = rest(server).put(url + "/status", json=current, timeout=10)
    assert r.status_code == 200, r.text
    assert not (r.json().get("status") or {}).get("conditions")
    server.kubectl("certificate", "deny", name)
    _, rows = get_table(server, "csr", name)
    assert row_of(rows, name)[-1] == "Denied"


def test_csr_spec_is_immutable(server: Server) -> None:
    name = unique("csr")
    r = post(server, "/apis/certificates.k8s.io/v1/certificatesigningrequests", csr_obj(name))
    assert r.status_code == 201, r.text
    before = r.json()["spec"]
    url = f"{server.url}/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
    patch = {
        "spec": {"signerName": "example.com/other", "usages": ["server auth"]},
        "metadata": {"labels": {"a": "b"}},
    }
    r = rest(server).patch(
        url,
        data=json.dumps(patch),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    )
    # as Kubernetes: the spec edit is dropped, the rest of the update applies
    assert r.status_code == 200, r.text
    assert r.json()["spec"] == before
    assert r.json()["metadata"]["labels"] == {"a": "b"}
    assert server.kubectl_json("get", "csr", name)["spec"] == before


def test_csr_requester_is_service_account(server: Server) -> None:
    ns = unique("sa")
    server.kubectl("create", "namespace", ns)
    server.kubectl("create", "serviceaccount", "robot", "-n", ns)
    token = server.kubectl("create", "token", "robot", "-n", ns).stdout.strip()
    s = requests.Session()
    s.trust_env = False
    s.verify = server.ca_file
    name = unique("csr")
    r = s.post(
        server.url + "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        json=csr_obj(name),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert spec["username"] == f"system:serviceaccount:{ns}:robot"
    assert "system:serviceaccounts" in spec["groups"]
    _, rows = get_table(server, "csr", name)
    assert row_of(rows, name)[3] == f"system:serviceaccount:{ns}:robot"


def test_reapply_and_server_side_apply(server: Server, applied: dict[str, str]) -> None:
    ns, sfx = applied["ns"], applied["sfx"]
    docs = manifest(ns, sfx)
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    hpa["spec"]["maxReplicas"] = 7
    np = next(d for d in docs if d["kind"] == "NetworkPolicy")
    np["spec"]["ingress"][0]["ports"].append({"port": 5433})
    keep = [hpa, np]
    out = server.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(keep)).stdout
    assert out.count("configured") == 2, out
    assert server.kubectl_json("get", "hpa", "web", "-n", ns)["spec"]["maxReplicas"] == 7
    ports = server.kubectl_json("get", "netpol", "db", "-n", ns)["spec"]["ingress"][0]["ports"]
    assert [p["port"] for p in ports] == [5432, 5433]
    ing = next(d for d in docs if d["kind"] == "Ingress")
    ing["spec"]["rules"][0]["host"] = "c.example.com"
    server.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(ing)
    )
    _, rows = get_table(server, "ing", "web", "-n", ns)
    assert row_of(rows, "web")[2] == "c.example.com,b.example.com"
