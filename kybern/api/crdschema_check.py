"""Validation of a CustomResourceDefinition object itself (`apiextensions.k8s.io/v1`), with
Kubernetes' rules and messages' meaning: names, group, scope, versions (one storage version,
deprecation warnings), conversion, subresources (scale paths), printer columns, selectable
fields, `status.storedVersions`, and for every version's `openAPIV3Schema` the structural-schema
rules and CEL rules (`crdschema_structural`). Kubernetes reports a schema shared by all versions
under `spec.validation.openAPIV3Schema`, and so do we. `default_crd` fills the defaults
(singular, listKind, conversion, storedVersions)."""

from __future__ import annotations

from typing import Any

from kybern.api import crdschema, crdschema_apply, crdschema_structural, errors, validation

Obj = dict[str, Any]
FieldErrors = list[errors.FieldError]
_COLUMN_TYPES = ["boolean", "date", "integer", "number", "string"]
_COLUMN_FORMATS = ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"]
MAX_SELECTABLE_FIELDS = 8


def _d(v: Any) -> Obj:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def default_crd(crd: Obj, old: Obj | None = None) -> None:
    """CRD defaulting as kube-apiserver does it (in place)."""
    spec = crd.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str) and names["kind"]:
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    conv = spec.setdefault("conversion", {"strategy": "None"})
    if isinstance(conv, dict):
        conv.setdefault("strategy", "None")
    spec.setdefault("preserveUnknownFields", False) if "preserveUnknownFields" in spec else None
    stored = [
        v.get("name") for v in _l(spec.get("versions")) if isinstance(v, dict) and v.get("storage")
    ]
    status = crd.get("status") if isinstance(crd.get("status"), dict) else None
    before = list(_d(_d(old).get("status")).get("storedVersions") or []) if old else []
    if status is None:
        status = crd["status"] = {}
    versions = list(status.get("storedVersions") or before)
    for v in stored:
        if isinstance(v, str) and v not in versions:
            versions.append(v)
    if versions:
        status["storedVersions"] = versions


def schema_paths(spec: Obj) -> list[str]:
    """Where each version's schema is reported: `spec.validation.openAPIV3Schema` when all
    versions share one (as Kubernetes' internal form hoists it), else per version."""
    versions = [v for v in _l(spec.get("versions")) if isinstance(v, dict)]
    schemas = [_d(v.get("schema")).get("openAPIV3Schema") for v in versions]
    if versions and all(s == schemas[0] for s in schemas):
        return ["spec.validation.openAPIV3Schema"] * len(versions)
    return [f"spec.versions[{i}].schema.openAPIV3Schema" for i in range(len(versions))]


def _shared(versions: list[Obj], key: str, top: str) -> list[str]:
    values = [v.get(key) for v in versions]
    if versions and all(x == values[0] for x in values):
        return [top] * len(versions)
    return [f"spec.versions[{i}].{key}" for i in range(len(versions))]


def _label(value: Any, path: str, mixed: bool = False) -> FieldErrors:
    if not isinstance(value, str):
        return [errors.invalid_value(path, value, "must be a string")]
    msgs = validation.is_dns1035_label(value.lower() if mixed else value)
    if not msgs:
        return []
    prefix = "may have mixed case, but should otherwise match: " if mixed else ""
    return [errors.invalid_value(path, value, prefix + ",".join(msgs))]


def validate_crd(crd: Obj, old: Obj | None = None) -> FieldErrors:
    """All errors of a CRD (create when `old` is None, else update). An update that leaves the
    spec alone (status, metadata) is checked for its stored versions only, as Kubernetes'
    status strategy does."""
    if old is not None and crd.get("spec") == old.get("spec"):
        return _stored_versions(crd)
    spec = _d(crd.get("spec"))
    meta = _d(crd.get("metadata"))
    names = _d(spec.get("names"))
    errs: FieldErrors = []
    group, plural = spec.get("group") or "", names.get("plural") or ""
    if meta.get("name") != f"{plural}.{group}":
        errs.append(
            errors.invalid_value(
                "metadata.name", meta.get("name"), 'must be spec.names.plural+"."+spec.group'
            )
        )
    if not group:
        errs.append(errors.required("spec.group"))
    elif msgs := validation.is_dns1123_subdomain(str(group)):
        errs.append(errors.invalid_value("spec.group", group, ",".join(msgs)))
    elif "." not in str(group):
        errs.append(
            errors.invalid_value("spec.group", group, "should be a domain with at least one dot")
        )
    scope = spec.get("scope")
    if not scope:
        errs.append(errors.required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        errs.append(errors.not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    errs += _names(names)
    if spec.get("preserveUnknownFields") is True:
        errs.append(
            errors.invalid_value(
                "spec.preserveUnknownFields",
                True,
                "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in "
                "spec.versions[*].schema instead",
            )
        )
    errs += _versions(spec)
    errs += _conversion(_d(spec.get("conversion")), spec)
    if old is not None:
        ospec = _d(old.get("spec"))
        established = any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in _l(_d(old.get("status")).get("conditions"))
            if isinstance(c, dict)
        )
        pairs = [("spec.group", group, ospec.get("group") or "")]
        pairs.append(("spec.names.plural", plural, _d(ospec.get("names")).get("plural") or ""))
        if established:
            pairs.append(("spec.scope", scope, ospec.get("scope")))
            pairs.append(("spec.names.kind", names.get("kind"), _d(ospec.get("names")).get("kind")))
        for path, new, prev in pairs:
            if new != prev:
                errs.append(errors.invalid_value(path, new, validation.FIELD_IMMUTABLE))
        errs += _stored_versions(crd)
    return errs


def _names(names: Obj) -> FieldErrors:
    errs: FieldErrors = []
    for f in ("plural", "singular", "kind", "listKind"):
        if not names.get(f):
            errs.append(errors.required(f"spec.names.{f}"))
        else:
            errs += _label(names[f], f"spec.names.{f}", mixed=f in ("kind", "listKind"))
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.append(
            errors.invalid_value(
                "spec.names.listKind", names["listKind"], "kind and listKind may not be the same"
            )
        )
    for key in ("shortNames", "categories"):
        for i, v in enumerate(_l(names.get(key))):
            errs += _label(v, f"spec.names.{key}[{i}]")
    return errs


def _stored_versions(crd: Obj) -> FieldErrors:
    stored = _l(_d(crd.get("status")).get("storedVersions"))
    versions = [v for v in _l(_d(crd.get("spec")).get("versions")) if isinstance(v, dict)]
    if not stored:
        return [
            errors.invalid_value(
                "status.storedVersions", stored, "must have at least one stored version"
            )
        ]
    names = {v.get("name") for v in versions}
    errs = [
        errors.invalid_value(f"status.storedVersions[{i}]", s, "must appear in spec.versions")
        for i, s in enumerate(stored)
        if s not in names
    ]
    for v in versions:
        if v.get("storage") and v.get("name") not in stored:
            errs.append(
                errors.invalid_value(
                    "status.storedVersions", stored, f"must have the storage version {v['name']}"
                )
            )
    return errs


def _versions(spec: Obj) -> FieldErrors:
    versions = [v for v in _l(spec.get("versions")) if isinstance(v, dict)]
    errs: FieldErrors = []
    if not versions:
        return [
            errors.required(
                "spec.versions", "must have exactly one version marked as storage version"
            )
        ]
    seen: set[str] = set()
    for i, v in enumerate(versions):
        name = v.get("name")
        errs += (
            _label(name, f"spec.versions[{i}].name")
            if name
            else [errors.required(f"spec.versions[{i}].name")]
        )
        if name in seen:
            errs.append(
                errors.invalid_value(
                    "spec.versions",
                    [x.get("name") for x in versions],
                    "must contain unique version names",
                )
            )
        seen.add(str(name))
        warning = v.get("deprecationWarning")
        if warning is not None:
            wpath = f"spec.versions[{i}].deprecationWarning"
            if not v.get("deprecated"):
                errs.append(
                    errors.invalid_value(wpath, warning, "can only be set for deprecated versions")
                )
            elif len(str(warning)) > 256:
                errs.append(errors.too_long(wpath, warning, 256))
            elif not str(warning).isprintable():
                errs.append(
                    errors.invalid_value(
                        wpath, warning, "must only contain printable UTF-8 characters"
                    )
                )
    if sum(1 for v in versions if v.get("storage") is True) != 1:
        errs.append(
            errors.invalid_value(
                "spec.versions",
                [v.get("name") for v in versions],
                "must have exactly one version marked as storage version",
            )
        )
    if not any(v.get("served", True) for v in versions):
        errs.append(
            errors.invalid_value(
                "spec.versions",
                [v.get("name") for v in versions],
                "must have at least one served version",
            )
        )
    paths = schema_paths(spec)
    sub_paths = _shared(versions, "subresources", "spec.subresources")
    col_paths = _shared(versions, "additionalPrinterColumns", "spec.additionalPrinterColumns")
    sel_paths = _shared(versions, "selectableFields", "spec.selectableFields")
    checked: set[str] = set()
    for i, v in enumerate(versions):
        raw = _d(v.get("schema")).get("openAPIV3Schema")
        node = crdschema.compile_schema(raw) if isinstance(raw, dict) else None
        if paths[i] not in checked:
            checked.add(paths[i])
            if raw is None:
                errs.append(
                    errors.required(
                        f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"
                    )
                )
            else:
                errs += crdschema_structural.validate_schema(raw, paths[i])
        if sub_paths[i] not in checked:
            checked.add(sub_paths[i])
            errs += _subresources(_d(v.get("subresources")), sub_paths[i], node)
        if col_paths[i] not in checked:
            checked.add(col_paths[i])
            for j, c in enumerate(_l(v.get("additionalPrinterColumns"))):
                errs += _column(_d(c), f"{col_paths[i]}[{j}]")
        if sel_paths[i] not in checked:
            checked.add(sel_paths[i])
            errs += _selectable(_l(v.get("selectableFields")), sel_paths[i], node)
    return errs


def _simple_path(path: Any, where: str) -> FieldErrors:
    if not isinstance(path, str) or not path:
        return [errors.required(where)]
    if (
        not path.startswith(".")
        or ".." in path
        or path.endswith(".")
        or any(c in path for c in "[]*@$ ")
    ):
        return [errors.invalid_value(where, path, "must be a simple json path starting with .")]
    return []


def _subresources(subs: Obj, path: str, node: crdschema.Node | None) -> FieldErrors:
    scale = subs.get("scale")
    if scale is None:
        return []
    scale = _d(scale)
    errs: FieldErrors = []
    spec_path = scale.get("specReplicasPath")
    status_path = scale.get("statusReplicasPath")
    if not spec_path:
        errs.append(errors.required(f"{path}.scale.specReplicasPath"))
    elif not str(spec_path).startswith(".spec."):
        errs.append(
            errors.invalid_value(
                f"{path}.scale.specReplicasPath", spec_path, "should be a json path under .spec"
            )
        )
    else:
        errs += _simple_path(spec_path, f"{path}.scale.specReplicasPath")
    if not status_path:
        errs.append(errors.required(f"{path}.scale.statusReplicasPath"))
    elif not str(status_path).startswith(".status."):
        errs.append(
            errors.invalid_value(
                f"{path}.scale.statusReplicasPath",
                status_path,
                "should be a json path under .status",
            )
        )
    else:
        errs += _simple_path(status_path, f"{path}.scale.statusReplicasPath")
    sel = scale.get("labelSelectorPath")
    if sel is not None and not (str(sel).startswith(".spec.") or str(sel).startswith(".status.")):
        errs.append(
            errors.invalid_value(
                f"{path}.scale.labelSelectorPath",
                sel,
                "should be a json path under either .spec or .status",
            )
        )
    if node is not None and not errs:
        for key in ("specReplicasPath", "statusReplicasPath"):
            target = crdschema_apply.schema_at(node, str(scale[key]))
            if target is not None and target.type not in ("integer", ""):
                errs.append(
                    errors.invalid_value(
                        f"{path}.scale.{key}",
                        scale[key],
                        "should point to an integer field in the schema",
                    )
                )
    return errs


def _column(c: Obj, path: str) -> FieldErrors:
    errs: FieldErrors = []
    if not c.get("name"):
        errs.append(errors.required(f"{path}.name"))
    typ = c.get("type")
    if not typ:
        errs.append(errors.required(f"{path}.type", "must be one of " + ",".join(_COLUMN_TYPES)))
    elif typ not in _COLUMN_TYPES:
        errs.append(
            errors.invalid_value(f"{path}.type", typ, "must be one of " + ",".join(_COLUMN_TYPES))
        )
    fmt = c.get("format")
    if fmt and fmt not in _COLUMN_FORMATS:
        errs.append(
            errors.invalid_value(
                f"{path}.format", fmt, "must be one of " + ",".join(_COLUMN_FORMATS)
            )
        )
    if not c.get("jsonPath"):
        errs.append(errors.required(f"{path}.JSONPath"))
    return errs


def _selectable(fields: list[Any], path: str, node: crdschema.Node | None) -> FieldErrors:
    errs: FieldErrors = []
    if len(fields) > MAX_SELECTABLE_FIELDS:
        errs.append(
            errors.FieldError(
                "FieldValueTooMany",
                path,
                f"Too many: {len(fields)}: must have at most {MAX_SELECTABLE_FIELDS} items",
            )
        )
    seen: set[str] = set()
    for i, f in enumerate(fields):
        jp = _d(f).get("jsonPath")
        where = f"{path}[{i}].jsonPath"
        perrs = _simple_path(jp, where)
        if perrs:
            errs += perrs
            continue
        if jp in seen:
            errs.append(errors.duplicate(where, jp))
        seen.add(str(jp))
        target = crdschema_apply.schema_at(node, str(jp)) if node is not None else None
        if node is not None and target is None:
            errs.append(errors.invalid_value(where, jp, "is an invalid path"))
        elif target is not None and target.type not in ("string", "boolean", "integer"):
            errs.append(
                errors.invalid_value(
                    where,
                    jp,
                    "must point to a field of type string, boolean or integer. Enum string fields "
                    "and strings with formats are allowed.",
                )
            )
    return errs


def _conversion(conv: Obj, spec: Obj) -> FieldErrors:
    strategy = conv.get("strategy") or "None"
    errs: FieldErrors = []
    if strategy not in ("None", "Webhook"):
        return [errors.not_supported("spec.conversion.strategy", strategy, ["None", "Webhook"])]
    webhook = conv.get("webhook")
    if strategy == "None":
        if webhook is not None:
            errs.append(
                errors.forbidden(
                    "spec.conversion.webhook",
                    "should not be set when strategy is not set to Webhook",
                )
            )
        return errs
    if webhook is None:
        return [
            errors.required("spec.conversion.webhook", "required when strategy is set to Webhook")
        ]
    webhook = _d(webhook)
    cc = _d(webhook.get("clientConfig"))
    path = "spec.conversion.webhook.clientConfig"
    url, svc = cc.get("url"), cc.get("service")
    if (url is None) == (svc is None):
        errs.append(errors.required(path, "exactly one of url or service is required"))
    elif url is not None:
        u = str(url)
        if not u.startswith("https://"):
            errs.append(
                errors.invalid_value(f"{path}.url", url, "'https' is the only allowed URL scheme")
            )
        if "#" in u:
            errs.append(errors.invalid_value(f"{path}.url", url, "fragments are not permitted"))
        if "?" in u:
            errs.append(
                errors.invalid_value(f"{path}.url", url, "query parameters are not permitted")
            )
    else:
        svc = _d(svc)
        for f in ("namespace", "name"):
            if not svc.get(f):
                errs.append(errors.required(f"{path}.service.{f}"))
        port = svc.get("port", 443)
        if not isinstance(port, int) or not 1 <= port <= 65535:
            errs.append(
                errors.invalid_value(
                    f"{path}.service.port",
                    port,
                    "port is not valid: must be between 1 and 65535, inclusive",
                )
            )
    crv = _l(webhook.get("conversionReviewVersions"))
    if not any(v in ("v1", "v1beta1") for v in crv):
        errs.append(
            errors.invalid_value(
                "spec.conversion.webhook.conversionReviewVersions",
                crv,
                "must include at least one of v1, v1beta1",
            )
        )
    return errs
