"""Admission webhooks without a network: rule matching (subresources, `*`, `*/*`, scope),
selectors, configuration validation with kube's wording, response checks, denials, CEL
matchConditions, and the dispatcher's order, reinvocation, dry-run and failure policies with
the HTTP call replaced."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any

import pytest

from kybern.api import errors, registry
from kybern.apiserver import admission
from kybern.apiserver import admission_match as match

Obj = dict[str, Any]
CONFIGMAPS = next(r for r in registry.BUILTIN if r.plural == "configmaps")
PODS = next(r for r in registry.BUILTIN if r.plural == "pods" and not r.group)
NAMESPACES = next(r for r in registry.BUILTIN if r.plural == "namespaces")


def req(
    op: str = "CREATE", resource: str = "pods", sub: str = "", ns: str = "default"
) -> match.Request:
    return match.Request(op, "", "v1", resource, sub, ns)


def rule(resources: list[str], ops: list[str] | None = None, scope: str = "*") -> match.Rule:
    return match.parse_rule(
        {
            "operations": ops or ["*"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": resources,
            "scope": scope,
        }
    )


@pytest.mark.parametrize(
    ("resources", "sub", "want"),
    [
        (["pods"], "", True),
        (["pods"], "status", False),
        (["pods/status"], "status", True),
        (["pods/status"], "", False),
        (["pods/*"], "status", True),
        (["pods/*"], "", False),
        (["*"], "", True),
        (["*"], "status", False),
        (["*/status"], "status", True),
        (["*/*"], "", True),
        (["*/*"], "binding", True),
        (["configmaps"], "", False),
    ],
)
def test_resource_patterns(resources: list[str], sub: str, want: bool) -> None:
    assert match.rule_matches(rule(resources), req(sub=sub)) is want


def test_operations_groups_versions_and_scope() -> None:
    assert not match.rule_matches(rule(["pods"], ["UPDATE"]), req("CREATE"))
    assert match.rule_matches(rule(["pods"], ["CREATE", "UPDATE"]), req("UPDATE"))
    other = match.Request("CREATE", "apps", "v1", "pods", "", "default")
    assert not match.rule_matches(rule(["pods"]), other)
    assert match.rule_matches(rule(["pods"], scope="Namespaced"), req())
    assert not match.rule_matches(rule(["pods"], scope="Cluster"), req())
    assert match.rule_matches(rule(["nodes"], scope="Cluster"), req(resource="nodes", ns=""))
    # a Namespace is cluster-scoped although its requests carry its own name as namespace
    ns_req = req(resource="namespaces", ns="team-a")
    assert match.rule_matches(rule(["namespaces"], scope="Cluster"), ns_req)
    assert not match.rule_matches(rule(["namespaces"], scope="Namespaced"), ns_req)


def hook(**kw: Any) -> match.Hook:
    base: Obj = {
        "configuration": "c",
        "name": "h.example.com",
        "mutating": False,
        "rules": (rule(["*"]),),
    }
    base.update(kw)
    return match.Hook(**base)


def test_selectors() -> None:
    h = hook(namespace_selector={"matchLabels": {"env": "prod"}})
    assert match.matches_namespace(h, req(), {"env": "prod"})
    assert not match.matches_namespace(h, req(), {"env": "dev"})
    assert match.matches_namespace(h, req(resource="nodes", ns=""), {})  # cluster-scoped
    assert not match.matches_namespace(h, req(resource="namespaces", ns="x"), {})
    h = hook(object_selector={"matchExpressions": [{"key": "a", "operator": "Exists"}]})
    labelled = {"metadata": {"labels": {"a": "1"}}}
    assert match.matches_object(h, labelled, None)
    assert match.matches_object(h, {"metadata": {}}, labelled)  # the old object counts too
    assert not match.matches_object(h, {"metadata": {}}, None)
    assert match.matches_object(hook(), None, None)


def config(kind: str = "ValidatingWebhookConfiguration", **hook_fields: Any) -> Obj:
    w: Obj = {
        "name": "v.example.com",
        "clientConfig": {"url": "https://h.example.com/v"},
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
            }
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }
    w.update(hook_fields)
    return {"kind": kind, "metadata": {"name": "c"}, "webhooks": [w]}


def fields(errs: list[errors.FieldError]) -> dict[str, str]:
    return {e.field: e.message for e in errs}


def test_validation_accepts_a_good_configuration() -> None:
    assert match.validate_configuration(config()) == []
    assert (
        match.validate_configuration(
            config("MutatingWebhookConfiguration", reinvocationPolicy="IfNeeded")
        )
        == []
    )


def test_validation_messages() -> None:
    got = fields(
        match.validate_configuration(
            config(
                name="short",
                sideEffects="Some",
                admissionReviewVersions=[],
                timeoutSeconds=31,
                failurePolicy="Maybe",
                clientConfig={"url": "http://h/x"},
            )
        )
    )
    assert got["webhooks[0].name"].endswith(
        "should be a domain with at least three segments separated by dots"
    )
    assert (
        got["webhooks[0].sideEffects"]
        == 'Unsupported value: "Some": supported values: "None", "NoneOnDryRun"'
    )
    assert (
        got["webhooks[0].admissionReviewVersions"]
        == "Required value: must specify one of v1, v1beta1"
    )
    assert got["webhooks[0].timeoutSeconds"].endswith(
        "the timeout value must be between 1 and 30 seconds"
    )
    assert "failurePolicy" in "".join(got)
    assert "'https' is the only allowed URL scheme" in got["webhooks[0].clientConfig.url"]
    missing = config()
    del missing["webhooks"][0]["sideEffects"]
    assert fields(match.validate_configuration(missing)) == {
        "webhooks[0].sideEffects": "Required value: must specify one of None, NoneOnDryRun"
    }
    both = config(clientConfig={"url": "https://a.b/", "service": {"namespace": "n", "name": "s"}})
    assert fields(match.validate_configuration(both)) == {
        "webhooks[0].clientConfig": "Required value: exactly one of url or service is required"
    }
    dup = config()
    dup["webhooks"].append(dict(dup["webhooks"][0]))
    assert fields(match.validate_configuration(dup)) == {
        "webhooks[1].name": 'Duplicate value: "v.example.com"'
    }
    # Some is kept on update of a configuration stored with it (as kube allows)
    old = config(sideEffects="Some")
    assert match.validate_configuration(config(sideEffects="Some"), old) == []
    assert match.configuration_errors("", "Pod", {}, None) == []


def test_parse_configuration() -> None:
    cfg = config(
        "MutatingWebhookConfiguration",
        clientConfig={
            "service": {"namespace": "ns", "name": "svc", "path": "/m"},
            "caBundle": base64.b64encode(b"PEM").decode(),
        },
        namespaceSelector={},
        reinvocationPolicy="IfNeeded",
        matchConditions=[{"name": "n", "expression": "true"}],
    )
    (h,) = match.parse_configuration(cfg)
    assert h.mutating and h.service == ("ns", "svc", "/m", 443) and h.ca_bundle == "PEM"
    assert h.namespace_selector is None and h.timeout == 10 and h.failure_policy == "Fail"
    assert h.reinvocation == "IfNeeded" and h.match_conditions == (("n", "true"),)


REVIEW = {"request": {"uid": "u1"}}


def answer(**response: Any) -> bytes:
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": "u1", **response},
        }
    ).encode()


def test_check_response() -> None:
    assert admission.check_response(hook(), REVIEW, answer(allowed=True))["allowed"] is True
    for body, text in [
        (b"nope", "received invalid webhook response"),
        (answer(allowed=True).replace(b"u1", b"u2"), 'expected response.uid="u1", got "u2"'),
        (
            b'{"apiVersion":"v1","kind":"Status"}',
            "expected webhook response of admission.k8s.io/v1",
        ),
        (answer(allowed=True, patch="W10="), "validating webhooks may not return patches"),
    ]:
        with pytest.raises(admission.CallError, match=re.escape(text)):
            admission.check_response(hook(), REVIEW, body)
    with pytest.raises(admission.CallError, match=re.escape("not response.patchType")):
        admission.check_response(hook(mutating=True), REVIEW, answer(allowed=True, patch="W10="))


def test_denied_status() -> None:
    e = admission.denied("h", {"code": 403, "reason": "Forbidden", "message": "no"})
    assert (e.code, e.reason, e.message) == (
        403,
        "Forbidden",
        'admission webhook "h" denied the request: no',
    )
    e = admission.denied("h", None)
    assert (
        e.code == 400
        and e.message == 'admission webhook "h" denied the request without explanation'
    )
    e = admission.denied("h", {"code": 200, "reason": "Nope"})
    assert e.code == 400 and e.message.endswith("denied the request: Nope")


def test_match_conditions() -> None:
    h = hook(match_conditions=(("not-kube-system", "request.namespace != 'kube-system'"),))
    assert match.evaluate_conditions(h, {"namespace": "default", "object": None})
    assert not match.evaluate_conditions(h, {"namespace": "kube-system"})
    labels = hook(
        match_conditions=(
            ("labelled", "has(object.metadata.labels) && 'a' in object.metadata.labels"),
        )
    )
    assert match.evaluate_conditions(labels, {"object": {"metadata": {"labels": {"a": "1"}}}})
    assert not match.evaluate_conditions(labels, {"object": {"metadata": {}}})
    with pytest.raises(ValueError):
        match.evaluate_conditions(hook(match_conditions=(("bad", "nonsense(("),)), {})


# ---- the dispatcher with the HTTP call replaced ------------------------------------------------


class FakeStore:
    crds = None

    def peek(self, res: Any, ns: str, name: str) -> None:
        return None


def dispatcher(responses: dict[str, Any]) -> tuple[admission.Admission, list[tuple[str, Obj]]]:
    adm = admission.Admission(FakeStore())  # type: ignore[arg-type]
    calls: list[tuple[str, Obj]] = []

    async def call(h: match.Hook, review: Obj) -> Obj:
        calls.append((h.name, review))
        r = responses[h.name]
        if isinstance(r, Exception):
            raise r
        out = r(review) if callable(r) else r
        return {"uid": review["request"]["uid"], **out}

    adm.call = call  # type: ignore[method-assign]
    return adm, calls


def patch_adding(key: str, value: str) -> Any:
    def respond(review: Obj) -> Obj:
        labels = review["request"]["object"]["metadata"].get("labels") or {}
        if labels.get(key) == value:
            return {"allowed": True}
        ops = [{"op": "add", "path": "/metadata/labels", "value": {**labels, key: value}}]
        return {
            "allowed": True,
            "patchType": "JSONPatch",
            "patch": base64.b64encode(json.dumps(ops).encode()).decode(),
        }

    return respond


def cm() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": "d", "uid": "U"},
    }


def test_mutating_order_and_reinvocation() -> None:
    adm, calls = dispatcher({"a.x.io": patch_adding("a", "1"), "b.x.io": patch_adding("b", "2")})
    adm.mutating = [
        hook(name="a.x.io", mutating=True, reinvocation="IfNeeded"),
        hook(name="b.x.io", mutating=True),
    ]
    a = admission.attrs(CONFIGMAPS, "CREATE", "d", "x")
    out = asyncio.run(adm.mutate(a, cm(), None))
    assert out is not None and out["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert out["metadata"]["uid"] == "U"
    # a ran, b changed the object after it, so a ran once more (and saw b's label)
    assert [n for n, _ in calls] == ["a.x.io", "b.x.io", "a.x.io"]
    assert calls[2][1]["request"]["object"]["metadata"]["labels"] == {"a": "1", "b": "2"}


def test_failure_policy_and_dry_run() -> None:
    adm, _ = dispatcher({"f.x.io": admission.CallError("failed to call webhook: boom")})
    adm.validating = [hook(name="f.x.io")]
    a = admission.attrs(CONFIGMAPS, "CREATE", "d", "x")
    with pytest.raises(errors.StatusError) as e:
        asyncio.run(adm.validate(a, cm(), None))
    assert e.value.code == 500
    assert (
        e.value.message
        == 'Internal error occurred: failed calling webhook "f.x.io": failed to call webhook: boom'
    )
    adm.validating = [hook(name="f.x.io", failure_policy="Ignore")]
    asyncio.run(adm.validate(a, cm(), None))
    # dry run: only webhooks without side effects
    adm.validating = [hook(name="f.x.io", side_effects="Some", failure_policy="Ignore")]
    dry = admission.attrs(CONFIGMAPS, "CREATE", "d", "x", dry_run=True)
    with pytest.raises(errors.StatusError) as e:
        asyncio.run(adm.validate(dry, cm(), None))
    assert (e.value.code, e.value.message) == (
        400,
        'admission webhook "f.x.io" does not support dry run',
    )


def test_delete_may_not_be_patched_and_configurations_are_exempt() -> None:
    ops = base64.b64encode(b'[{"op": "add", "path": "/a", "value": 1}]').decode()
    adm, calls = dispatcher({"m.x.io": {"allowed": True, "patchType": "JSONPatch", "patch": ops}})
    adm.mutating = [hook(name="m.x.io", mutating=True)]
    a = admission.attrs(CONFIGMAPS, "DELETE", "d", "x")
    with pytest.raises(errors.StatusError, match="attempted to modify the object"):
        asyncio.run(adm.mutate(a, None, cm()))
    assert calls[0][1]["request"]["object"] is None
    assert calls[0][1]["request"]["options"]["kind"] == "DeleteOptions"
    cfg = admission.MUTATING
    calls.clear()
    asyncio.run(adm.mutate(admission.attrs(cfg, "CREATE", "", "c"), {"metadata": {}}, None))
    assert calls == []


def test_namespace_requests_and_subresources() -> None:
    a = admission.attrs(NAMESPACES, "CREATE", "", "team-a")
    assert a.namespace == "team-a" and a.review("u", {}, None)["request"]["namespace"] == "team-a"
    s = admission.attrs(PODS, "UPDATE", "d", "p", subresource="status")
    r = s.review("u", {}, {})["request"]
    assert r["subResource"] == r["requestSubResource"] == "status"
    assert (
        r["options"]["kind"] == "UpdateOptions" and r["userInfo"]["username"] == "system:apiserver"
    )
