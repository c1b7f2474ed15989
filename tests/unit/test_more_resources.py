"""Unit tests of the networking, scheduling, node, autoscaling, certificates, storage-capacity,
admission-policy and flow-control kinds: registry entries, validation (with Kubernetes' field
paths), defaulting, the CSR strategy (requester, spec/status/approval split), the system
PriorityClasses bootstrap, and the table printers' cells."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kybern.api import defaults, registry, validation
from kybern.apiserver import printers, strategy, tables  # noqa: F401  (registers printers)

REG = registry.Registry()


def res(group: str, kind: str) -> registry.Resource:
    return next(r for r in registry.BUILTIN if r.group == group and r.kind == kind)


def fields(errs: list[Any]) -> list[tuple[str, str]]:
    return [(e.field, e.reason) for e in errs]


def pem_csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bob")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


def csr(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "c"},
        "spec": {
            "request": pem_csr(),
            "signerName": "example.com/signer",
            "usages": ["client auth"],
            **spec,
        },
    }


# ---- registry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "version", "plural", "kind", "namespaced", "short", "subs"),
    [
        ("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), {"status"}),
        ("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, (), set()),
        ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",), set()),
        ("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",), set()),
        ("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False, (), set()),
        (
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            True,
            ("hpa",),
            {"status"},
        ),
        (
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
            "CertificateSigningRequest",
            False,
            ("csr",),
            {"status", "approval"},
        ),
        ("storage.k8s.io", "v1", "csistoragecapacities", "CSIStorageCapacity", True, (), set()),
        (
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "flowschemas",
            "FlowSchema",
            False,
            (),
            {"status"},
        ),
    ],
)
def test_registry_entries(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool,
    short: tuple[str, ...],
    subs: set[str],
) -> None:
    r = REG.lookup(group, version, plural)
    assert r is not None
    assert (r.kind, r.namespaced, r.short_names, set(r.subresources)) == (
        kind,
        namespaced,
        short,
        subs,
    )


def test_hpa_in_category_all() -> None:
    assert res("autoscaling", "HorizontalPodAutoscaler").categories == ("all",)
    assert res("networking.k8s.io", "Ingress").categories == ()


# ---- validation ------------------------------------------------------------------------------


def test_ingress_rules() -> None:
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    ing = {
        "spec": {
            "rules": [
                {"host": "10.0.0.1", "http": {"paths": [{"path": "/", "backend": backend}]}},
                {
                    "host": "*.example.com",
                    "http": {"paths": [{"path": "a//b", "pathType": "Prefix", "backend": {}}]},
                },
            ]
        }
    }
    got = fields(validation.validate("Ingress", ing))
    assert got == [
        ("spec.rules[0].host", "FieldValueInvalid"),
        ("spec.rules[0].http.paths[0].pathType", "FieldValueRequired"),
        ("spec.rules[1].http.paths[0].path", "FieldValueInvalid"),
        ("spec.rules[1].http.paths[0].path", "FieldValueInvalid"),
        ("spec.rules[1].http.paths[0].backend", "FieldValueInvalid"),
    ]
    assert fields(validation.validate("Ingress", {"spec": {}})) == [("spec", "FieldValueInvalid")]


def test_ingress_class_controller_immutable() -> None:
    old = {"spec": {"controller": "example.com/a"}}
    new = {"spec": {"controller": "example.com/b"}}
    assert fields(validation.validate_update("IngressClass", new, old)) == [
        ("spec.controller", "FieldValueInvalid")
    ]
    bad = {"spec": {"controller": "nodomain", "parameters": {"kind": "K", "scope": "Namespace"}}}
    assert fields(validation.validate("IngressClass", bad)) == [
        ("spec.controller", "FieldValueInvalid"),
        ("spec.parameters.name", "FieldValueRequired"),
        ("spec.parameters.namespace", "FieldValueRequired"),
    ]


def test_network_policy_peers_and_ports() -> None:
    np = {
        "spec": {
            "podSelector": {},
            "ingress": [
                {
                    "from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}],
                    "ports": [{"port": 80, "endPort": 70}, {"port": "http", "endPort": 90}],
                }
            ],
            "policyTypes": ["Ingress", "Sideways"],
        }
    }
    assert fields(validation.validate("NetworkPolicy", np)) == [
        ("spec.ingress[0].ports[0].endPort", "FieldValueInvalid"),
        ("spec.ingress[0].ports[1].endPort", "FieldValueForbidden"),
        ("spec.ingress[0].from[0]", "FieldValueRequired"),
        ("spec.ingress[0].from[1].ipBlock.except[0]", "FieldValueInvalid"),
        ("spec.policyTypes[1]", "FieldValueNotSupported"),
    ]


def test_priority_class_rules() -> None:
    def pc(name: str, value: int, **kw: Any) -> dict[str, Any]:
        return {"metadata": {"name": name}, "value": value, **kw}

    assert validation.validate("PriorityClass", pc("high", 1_000_000_000)) == []
    assert fields(validation.validate("PriorityClass", pc("high", 1_000_000_001))) == [
        ("value", "FieldValueForbidden")
    ]
    assert validation.validate("PriorityClass", pc("system-node-critical", 2_000_001_000)) == []
    errs = validation.validate("PriorityClass", pc("system-node-critical", 5))
    assert fields(errs) == [("metadata.name", "FieldValueForbidden")]
    assert "value of system-node-critical PriorityClass must be 2000001000" in errs[0].message
    errs = validation.validate_update("PriorityClass", pc("a", 2), pc("a", 1))
    assert [e.text() for e in errs] == ["value: Forbidden: may not be changed in an update."]


def test_runtime_class_and_csi_capacity() -> None:
    assert fields(validation.validate("RuntimeClass", {"handler": "Bad_Handler"})) == [
        ("handler", "FieldValueInvalid")
    ]
    errs = validation.validate_update("RuntimeClass", {"handler": "b"}, {"handler": "a"})
    assert fields(errs) == [("handler", "FieldValueInvalid")]
    cap = {"storageClassName": "", "capacity": "-1Gi"}
    assert fields(validation.validate("CSIStorageCapacity", cap)) == [
        ("storageClassName", "FieldValueRequired"),
        ("capacity", "FieldValueInvalid"),
    ]


def test_hpa_rules() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "spec": {
            "scaleTargetRef": {"kind": "Deployment"},
            "minReplicas": 0,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization"}},
                },
                {"type": "Pods"},
                {"type": "Bogus"},
            ],
            "behavior": {
                "scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 9999}]}
            },
        },
    }
    assert fields(validation.validate("HorizontalPodAutoscaler", hpa)) == [
        ("spec.scaleTargetRef.name", "FieldValueRequired"),
        ("spec.minReplicas", "FieldValueInvalid"),
        ("spec.metrics[0].resource.target.averageUtilization", "FieldValueRequired"),
        ("spec.metrics[1].pods", "FieldValueRequired"),
        ("spec.metrics[2].type", "FieldValueNotSupported"),
        ("spec.behavior.scaleUp.policies[0].value", "FieldValueInvalid"),
        ("spec.behavior.scaleUp.policies[0].periodSeconds", "FieldValueInvalid"),
    ]


def test_csr_rules() -> None:
    assert validation.validate("CertificateSigningRequest", csr()) == []
    bad = csr(usages=["client auth", "client auth", "flying"], expirationSeconds=10)
    bad["spec"]["request"] = base64.b64encode(b"not a pem").decode()
    bad["spec"]["signerName"] = "nodomain"
    errs = validation.validate("CertificateSigningRequest", bad)
    assert fields(errs) == [
        ("spec.request", "FieldValueInvalid"),
        ("spec.usages[2]", "FieldValueNotSupported"),
        ("spec.usages[1]", "FieldValueDuplicate"),
        ("spec.signerName", "FieldValueInvalid"),
        ("spec.expirationSeconds", "FieldValueInvalid"),
    ]
    assert "PEM block type must be CERTIFICATE REQUEST" in errs[0].message
    no_signer = csr()
    del no_signer["spec"]["signerName"]
    assert fields(validation.validate("CertificateSigningRequest", no_signer)) == [
        ("spec.signerName", "FieldValueRequired")
    ]
    both = csr()
    both["status"] = {
        "conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]
    }
    assert fields(validation.validate("CertificateSigningRequest", both)) == [
        ("status.conditions[1].type", "FieldValueInvalid")
    ]
    old = csr()
    old["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    new = csr()
    assert fields(validation.validate_update("CertificateSigningRequest", new, old)) == [
        ("status.conditions", "FieldValueForbidden")
    ]


def test_tampered_csr_signature_is_refused() -> None:
    good = csr()
    pem = base64.b64decode(good["spec"]["request"])
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    tampered = bytearray(der)
    tampered[-5] ^= 0xFF  # inside the signature
    body = base64.encodebytes(bytes(tampered)).decode()
    text = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    good["spec"]["request"] = base64.b64encode(text.encode()).decode()
    assert fields(validation.validate("CertificateSigningRequest", good)) == [
        ("spec.request", "FieldValueInvalid")
    ]


def test_admission_policy_and_flowcontrol_rules() -> None:
    assert fields(validation.validate("ValidatingAdmissionPolicy", {"spec": {}})) == [
        ("spec.validations", "FieldValueRequired"),
        ("spec.matchConstraints", "FieldValueRequired"),
    ]
    binding = {"spec": {"validationActions": ["Deny", "Warn", "Deny"]}}
    assert fields(validation.validate("ValidatingAdmissionPolicyBinding", binding)) == [
        ("spec.policyName", "FieldValueRequired"),
        ("spec.validationActions[2]", "FieldValueDuplicate"),
        ("spec.validationActions", "FieldValueInvalid"),
    ]
    fs = {"spec": {"matchingPrecedence": 20000}}
    assert fields(validation.validate("FlowSchema", fs)) == [
        ("spec.priorityLevelConfiguration.name", "FieldValueRequired"),
        ("spec.matchingPrecedence", "FieldValueInvalid"),
    ]
    pl = {
        "spec": {
            "type": "Limited",
            "limited": {
                "limitResponse": {"type": "Queue", "queuing": {"queues": 4, "handSize": 8}}
            },
        }
    }
    assert fields(validation.validate("PriorityLevelConfiguration", pl)) == [
        ("spec.limited.limitResponse.queuing.handSize", "FieldValueInvalid")
    ]


# ---- defaults --------------------------------------------------------------------------------


def test_defaults() -> None:
    hpa = {"apiVersion": "autoscaling/v2", "spec": {"behavior": {"scaleDown": {"policies": []}}}}
    defaults.apply_defaults("HorizontalPodAutoscaler", hpa)
    spec = hpa["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 80,
    }
    assert spec["behavior"]["scaleUp"]["policies"][0] == {
        "type": "Pods",
        "value": 4,
        "periodSeconds": 15,
    }
    assert spec["behavior"]["scaleDown"] == {"policies": [], "selectPolicy": "Max"}
    ic = {"spec": {"controller": "a.b/c", "parameters": {"kind": "K", "name": "n"}}}
    defaults.apply_defaults("IngressClass", ic)
    assert ic["spec"]["parameters"]["scope"] == "Cluster"
    pl: dict[str, Any] = {
        "spec": {"type": "Limited", "limited": {"limitResponse": {"queuing": {}}}}
    }
    defaults.apply_defaults("PriorityLevelConfiguration", pl)
    assert pl["spec"]["limited"]["nominalConcurrencyShares"] == 30
    assert pl["spec"]["limited"]["limitResponse"]["queuing"] == {
        "queues": 64,
        "handSize": 8,
        "queueLengthLimit": 50,
    }
    vap: dict[str, Any] = {"spec": {"matchConstraints": {"resourceRules": [{}]}}}
    defaults.apply_defaults("ValidatingAdmissionPolicy", vap)
    assert vap["spec"]["failurePolicy"] == "Fail"
    assert vap["spec"]["matchConstraints"]["matchPolicy"] == "Equivalent"
    assert vap["spec"]["matchConstraints"]["resourceRules"][0]["scope"] == "*"


# ---- CSR strategy ---------------------------------------------------------------------------

CSR_RES = res("certificates.k8s.io", "CertificateSigningRequest")


def test_csr_requester_comes_from_the_request() -> None:
    obj = csr(username="mallory", groups=["system:masters"], uid="x")
    token = strategy.REQUEST_USER.set(("alice", ["dev", "system:authenticated"]))
    try:
        strategy.Hooks().prepare_create(CSR_RES, obj)
    finally:
        strategy.REQUEST_USER.reset(token)
    assert obj["spec"]["username"] == "alice"
    assert obj["spec"]["groups"] == ["dev", "system:authenticated"]
    assert "uid" not in obj["spec"]
    outside = csr(username="mallory")
    strategy.Hooks().prepare_create(CSR_RES, outside)
    assert "username" not in outside["spec"]


def test_csr_update_paths() -> None:
    old = csr()
    old["metadata"].update(resourceVersion="5", uid="u")
    old["status"] = {"conditions": [{"type": "Foo", "status": "True"}]}
    sent = csr(signerName="example.com/other")
    sent["metadata"]["labels"] = {"a": "b"}
    sent["status"] = {
        "conditions": [{"type": "Approved", "status": "True"}],
        "certificate": "Y2VydA==",
    }
    main = strategy.prepare_update(CSR_RES, _copy(sent), old, "")
    assert main["spec"] == old["spec"]
    assert main["status"] == old["status"]
    assert main["metadata"]["labels"] == {"a": "b"}
    status = strategy.prepare_update(CSR_RES, _copy(sent), old, "status")
    assert status["spec"] == old["spec"]
    # /status sets the certificate and the conditions other than Approved/Denied (a signer's
    # Failed); an Approved sent there is dropped, one already there is kept
    assert status["status"] == {"certificate": "Y2VydA=="}
    approved = {"type": "Approved", "status": "True"}
    failed = {"type": "Failed", "status": "True", "reason": "SignerValidationFailure"}
    signer = _copy(sent)
    signer["status"] = {"conditions": [failed]}
    old_approved = {**old, "status": {"conditions": [approved]}}
    out = strategy.prepare_update(CSR_RES, signer, old_approved, "status")
    assert out["status"]["conditions"] == [approved, failed]
    approval = strategy.prepare_update(CSR_RES, _copy(sent), old, "approval")
    assert approval["spec"] == old["spec"]
    assert approval["status"] == {"conditions": [{"type": "Approved", "status": "True"}]}
    assert "labels" not in approval["metadata"]


def _copy(o: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(o)


def test_bootstrap_creates_the_system_priority_classes() -> None:
    class FakeStore:
        def __init__(self) -> None:
            self.objs: dict[str, dict[str, Any]] = {"system-node-critical": {"value": 2000001000}}

        def peek(self, r: registry.Resource, namespace: str, name: str) -> Any:
            return self.objs.get(name)

        async def create(self, r: registry.Resource, namespace: str, obj: dict[str, Any]) -> Any:
            assert r.kind == "PriorityClass" and namespace == ""
            assert validation.validate("PriorityClass", obj) == []
            self.objs[obj["metadata"]["name"]] = obj
            return obj

    st = FakeStore()
    asyncio.run(strategy.bootstrap(st))
    assert st.objs["system-cluster-critical"]["value"] == 2000000000
    assert st.objs["system-node-critical"] == {"value": 2000001000}  # kept as it was


# ---- printers --------------------------------------------------------------------------------


def row(group: str, kind: str, obj: dict[str, Any]) -> list[Any]:
    obj.setdefault("metadata", {}).setdefault("name", "x")
    p = printers.PRINTERS[(group, kind)]
    cells = p.row(obj, 0.0)
    assert len(cells) == len(p.columns)
    return cells


def test_ingress_cells() -> None:
    rules = [{"host": f"h{i}.example.com"} for i in range(5)] + [{}]
    ing = {
        "spec": {"rules": rules},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"hostname": "lb.example"}]}},
    }
    cells = row("networking.k8s.io", "Ingress", ing)
    assert cells[1:5] == [
        "<none>",
        "h0.example.com,h1.example.com,h2.example.com + 3 more...",
        "10.0.0.2,lb.example",
        "80",
    ]
    assert row("networking.k8s.io", "Ingress", {"spec": {"rules": [{}]}})[2] == "*"


def test_hpa_targets() -> None:
    hpa = {
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "memory",
                        "target": {"type": "AverageValue", "averageValue": "1024Mi"},
                    },
                },
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "qps"},
                        "target": {"type": "AverageValue", "averageValue": "10"},
                    },
                },
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": "q"},
                        "target": {"type": "Value", "value": "5"},
                    },
                },
            ],
        },
        "status": {
            "currentMetrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "memory", "current": {"averageValue": "512Mi"}},
                }
            ]
        },
    }
    cells = row("autoscaling", "HorizontalPodAutoscaler", hpa)
    assert cells[1:6] == ["Deployment/web", "512Mi/1Gi, <unknown>/10 + 1 more...", "<unset>", 4, 0]


def test_csr_and_class_cells() -> None:
    c = {
        "spec": {"signerName": "a.b/c", "username": "u", "expirationSeconds": 86400},
        "status": {"conditions": [{"type": "Approved"}, {"type": "Failed"}], "certificate": "eA=="},
    }
    cells = row("certificates.k8s.io", "CertificateSigningRequest", c)
    assert cells[2:] == ["a.b/c", "u", "24h", "Approved,Failed,Issued"]
    pc = row("scheduling.k8s.io", "PriorityClass", {"value": 7, "preemptionPolicy": "Never"})
    assert (pc[1], pc[2], pc[4]) == (7, False, "Never")
    np = row("networking.k8s.io", "NetworkPolicy", {"spec": {"podSelector": {}}})
    assert np[1] == "<none>"
    binding = {"spec": {"policyName": "p", "paramRef": {"name": "cfg"}}}
    assert (
        row("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", binding)[2]
        == "*/cfg"
    )
    pl = row(
        "flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration", {"spec": {"type": "Exempt"}}
    )
    assert pl[1:6] == ["Exempt", "<none>", "<none>", "<none>", "<none>"]
