"""Validation of the API server's policy kinds (dispatched from `validation_more`): the
admissionregistration.k8s.io ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding,
and the flowcontrol.apiserver.k8s.io FlowSchema and PriorityLevelConfiguration (API priority
and fairness), with the main rules of `pkg/apis/{admissionregistration,flowcontrol}/validation`
and Kubernetes' wording. CEL expressions of admission policies are not compiled (the policies
are stored, not enforced)."""

from __future__ import annotations

from typing import Any

from kybern.api import errors
from kybern.api import validation as v
from kybern.api.validation import FieldErrors, _c, _d, _enum, _invalid, _is_int, _l

Obj = dict[str, Any]

# ---------------------------------------------------------------- admissionregistration


def _vap(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    validations = _l(spec.get("validations"))
    if not validations and not _l(spec.get("auditAnnotations")):
        errs.append(
            errors.required(
                "spec.validations", "validations or auditAnnotations must contain at least one item"
            )
        )
    for i, val in enumerate(validations):
        if not _d(val).get("expression"):
            errs.append(errors.required(f"spec.validations[{i}].expression"))
        reason = _d(val).get("reason")
        supported = ["Forbidden", "Invalid", "RequestEntityTooLarge", "Unauthorized"]
        errs += _enum(reason, f"spec.validations[{i}].reason", supported)
    errs += _enum(spec.get("failurePolicy"), "spec.failurePolicy", ["Fail", "Ignore"])
    if spec.get("paramKind") is not None:
        pk = _d(spec["paramKind"])
        for k in ("apiVersion", "kind"):
            if not pk.get(k):
                errs.append(errors.required(f"spec.paramKind.{k}"))
    if spec.get("matchConstraints") is None:
        errs.append(errors.required("spec.matchConstraints"))
    elif not _l(_d(spec["matchConstraints"]).get("resourceRules")):
        errs.append(errors.required("spec.matchConstraints.resourceRules"))
    for i, var in enumerate(_l(spec.get("variables"))):
        var, vpath = _d(var), f"spec.variables[{i}]"
        if not var.get("name"):
            errs.append(errors.required(_c(vpath, "name")))
        if not var.get("expression"):
            errs.append(errors.required(_c(vpath, "expression")))
    return errs


def _vap_binding(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    if not spec.get("policyName"):
        errs.append(errors.required("spec.policyName"))
    actions = _l(spec.get("validationActions"))
    if not actions:
        errs.append(errors.required("spec.validationActions"))
    seen: set[Any] = set()
    for i, a in enumerate(actions):
        path = f"spec.validationActions[{i}]"
        if a not in ("Audit", "Deny", "Warn"):
            errs.append(errors.not_supported(path, a, ["Audit", "Deny", "Warn"]))
        if a in seen:
            errs.append(errors.duplicate(path, a))
        seen.add(a)
    if "Deny" in seen and "Warn" in seen:
        detail = (
            "must not contain both Deny and Warn (repeating the same validation failure "
            "information in the API response and headers serves no purpose)"
        )
        errs.append(_invalid("spec.validationActions", sorted(seen), detail))
    if spec.get("paramRef") is not None:
        pr = _d(spec["paramRef"])
        if pr.get("name") and pr.get("selector") is not None:
            errs.append(
                errors.forbidden("spec.paramRef.name", "name and selector are mutually exclusive")
            )
        errs += _enum(
            pr.get("parameterNotFoundAction"),
            "spec.paramRef.parameterNotFoundAction",
            ["Allow", "Deny"],
        )
    return errs


# ---------------------------------------------------------------- flowcontrol.apiserver.k8s.io


def _flow_schema(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    if not _d(spec.get("priorityLevelConfiguration")).get("name"):
        errs.append(errors.required("spec.priorityLevelConfiguration.name"))
    prec = spec.get("matchingPrecedence")
    if _is_int(prec) and not 1 <= prec <= 10000:
        errs.append(_invalid("spec.matchingPrecedence", prec, v.inclusive_range_error(1, 10000)))
    if spec.get("distinguisherMethod") is not None:
        typ = _d(spec["distinguisherMethod"]).get("type") or ""
        errs += _enum(typ, "spec.distinguisherMethod.type", ["ByNamespace", "ByUser"])
    for i, rule in enumerate(_l(spec.get("rules"))):
        rule, rpath = _d(rule), f"spec.rules[{i}]"
        if not _l(rule.get("subjects")):
            errs.append(errors.required(_c(rpath, "subjects")))
        for j, s in enumerate(_l(rule.get("subjects"))):
            errs += _enum(
                _d(s).get("kind") or "",
                f"{rpath}.subjects[{j}].kind",
                ["Group", "ServiceAccount", "User"],
            )
        if not _l(rule.get("resourceRules")) and not _l(rule.get("nonResourceRules")):
            detail = "at least one of resourceRules and nonResourceRules has to be non-empty"
            errs.append(errors.required(rpath, detail))
    return errs


def _priority_level(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    typ = spec.get("type") or ""
    errs += _enum(typ, "spec.type", ["Exempt", "Limited"])
    limited, exempt = spec.get("limited"), spec.get("exempt")
    if typ == "Limited":
        if exempt is not None:
            errs.append(errors.forbidden("spec.exempt", "must be nil if the type is Limited"))
        if limited is None:
            errs.append(errors.required("spec.limited", "must not be empty when type is Limited"))
    elif typ == "Exempt" and limited is not None:
        errs.append(errors.forbidden("spec.limited", "must be nil if the type is not Limited"))
    if limited is not None:
        lim = _d(limited)
        shares = lim.get("nominalConcurrencyShares")
        if _is_int(shares) and shares < 0:
            errs.append(_invalid("spec.limited.nominalConcurrencyShares", shares, v.IS_NEGATIVE))
        for k in ("lendablePercent", "borrowingLimitPercent"):
            pct = lim.get(k)
            if _is_int(pct) and (pct < 0 or (k == "lendablePercent" and pct > 100)):
                detail = (
                    "must be between 0 and 100, inclusive"
                    if k == "lendablePercent"
                    else v.IS_NEGATIVE
                )
                errs.append(_invalid(f"spec.limited.{k}", pct, detail))
        lr, lpath = _d(lim.get("limitResponse")), "spec.limited.limitResponse"
        lrt = lr.get("type") or ""
        errs += _enum(lrt, _c(lpath, "type"), ["Queue", "Reject"])
        if lrt == "Queue":
            q, qpath = _d(lr.get("queuing")), _c(lpath, "queuing")
            queues, hand, qll = q.get("queues"), q.get("handSize"), q.get("queueLengthLimit")
            if _is_int(queues) and queues <= 0:
                errs.append(_invalid(_c(qpath, "queues"), queues, "must be positive"))
            if _is_int(qll) and qll <= 0:
                errs.append(_invalid(_c(qpath, "queueLengthLimit"), qll, "must be positive"))
            if _is_int(hand) and hand <= 0:
                errs.append(_invalid(_c(qpath, "handSize"), hand, "must be positive"))
            elif _is_int(hand) and _is_int(queues) and hand > queues:
                detail = f"should not be greater than queues ({queues})"
                errs.append(_invalid(_c(qpath, "handSize"), hand, detail))
        elif lrt == "Reject" and lr.get("queuing") is not None:
            detail = "must be nil if limited.limitResponse.type is not Limited"
            errs.append(errors.forbidden(_c(lpath, "queuing"), detail))
    return errs
