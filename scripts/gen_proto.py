"""Generate `kybern/api/proto_data.json`, the protobuf field table of the Kubernetes API, from a
kubectl binary (dev-time only: `.venv/bin/python scripts/gen_proto.py [KUBECTL] [VERSION]`,
default `/usr/bin/kubectl` and `1.32`, the Kubernetes version of that kubectl). kubectl embeds
the gzipped `FileDescriptorProto` of every `generated.proto` of k8s.io/api and
k8s.io/apimachinery it links; the script finds the gzip streams, parses the descriptors and
keeps, for the group-versions listed in `FILES` and every message they reach, only the facts
the codec needs, per field: `[json name, number, label, type, message type, map [key type,
value type, value message] | null, pointer, required, inline]`. `pointer`: the Go field is a
pointer (no `(gogoproto.nullable) = false`); the JSON name, `required` (no `omitempty`) and
`inline` (an embedded struct, `json:",inline"`) come from the OpenAPI definitions of the same
Kubernetes version in the PyPI package kubernetes-validate. Nothing else (no comments, no
options) is copied; the output is deterministic: sorted keys, one message per line."""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "kybern" / "api" / "proto_data.json"

# Go package -> API group. Only these group-versions (and what they reference) are kept.
FILES: dict[str, str] = {
    "k8s.io/api/core/v1": "",
    "k8s.io/api/apps/v1": "apps",
    "k8s.io/api/batch/v1": "batch",
    "k8s.io/api/autoscaling/v1": "autoscaling",
    "k8s.io/api/autoscaling/v2": "autoscaling",
    "k8s.io/api/policy/v1": "policy",
    "k8s.io/api/rbac/v1": "rbac.authorization.k8s.io",
    "k8s.io/api/storage/v1": "storage.k8s.io",
    "k8s.io/api/coordination/v1": "coordination.k8s.io",
    "k8s.io/api/discovery/v1": "discovery.k8s.io",
    "k8s.io/api/events/v1": "events.k8s.io",
    "k8s.io/api/networking/v1": "networking.k8s.io",
    "k8s.io/api/scheduling/v1": "scheduling.k8s.io",
    "k8s.io/api/node/v1": "node.k8s.io",
    "k8s.io/api/certificates/v1": "certificates.k8s.io",
    "k8s.io/api/admissionregistration/v1": "admissionregistration.k8s.io",
    "k8s.io/api/authentication/v1": "authentication.k8s.io",
    "k8s.io/api/authorization/v1": "authorization.k8s.io",
    "k8s.io/api/flowcontrol/v1": "flowcontrol.apiserver.k8s.io",
    "k8s.io/apimachinery/pkg/apis/meta/v1": "meta.k8s.io",
    "k8s.io/apimachinery/pkg/runtime": "",
    "k8s.io/apimachinery/pkg/api/resource": "",
    "k8s.io/apimachinery/pkg/util/intstr": "",
}
META = "k8s.io.apimachinery.pkg.apis.meta.v1."
OBJECT_META = META + "ObjectMeta"
LIST_META = META + "ListMeta"
# meta/v1 messages that are kinds of their own (no ObjectMeta) and served or sent by clients
META_KINDS = ("DeleteOptions", "WatchEvent", "Status", "APIGroupList", "APIResourceList")

_TYPES = {
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE: "message",
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
}
_NULLABLE_FALSE = b"\xc8\xde\x1f\x00"  # (gogoproto.nullable) = false, extension 65001


def extract(binary: Path) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """Every gzipped FileDescriptorProto found in the binary, by file name."""
    data = binary.read_bytes()
    found: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    i = data.find(b"\x1f\x8b\x08")
    while i >= 0:
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[i : i + (4 << 20)])
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(raw)
            if fd.name.endswith("generated.proto") and fd.message_type:
                found.setdefault(fd.name, fd)
        except Exception:
            pass
        i = data.find(b"\x1f\x8b\x08", i + 3)
    return found


def _pointer(f: descriptor_pb2.FieldDescriptorProto) -> bool:
    """A pointer in Go: a singular field without `(gogoproto.nullable) = false`. Lists, maps
    and []byte are never pointers (nil and empty are one thing on the wire)."""
    if f.label == f.LABEL_REPEATED or f.type == f.TYPE_BYTES:
        return False
    return _NULLABLE_FALSE not in f.options.SerializeToString()


def build(fds: dict[str, descriptor_pb2.FileDescriptorProto]) -> dict[str, Any]:
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    top: list[tuple[str, str]] = []  # (message, Go package) of top-level messages
    for fd in fds.values():
        for m in fd.message_type:
            name = f"{fd.package}.{m.name}"
            messages[name] = m
            top.append((name, fd.options.go_package))
            for nt in m.nested_type:
                messages[f"{name}.{nt.name}"] = nt

    # kinds: messages with ObjectMeta (objects) or ListMeta (lists) of the selected packages
    kinds: dict[str, str] = {}
    roots: list[str] = []
    for name, pkg in top:
        m = messages[name]
        group = FILES[pkg]
        version = pkg.rsplit("/", 1)[1]
        meta = next((f for f in m.field if f.name == "metadata"), None)
        is_kind = meta is not None and meta.type_name[1:] in (OBJECT_META, LIST_META)
        if pkg.endswith("meta/v1"):
            is_kind = m.name in META_KINDS
        if is_kind:
            kinds[f"{group}/{version}/{m.name}" if group else f"{version}/{m.name}"] = name
        if pkg.startswith("k8s.io/api/") or is_kind:
            roots.append(name)
    roots.append("k8s.io.apimachinery.pkg.runtime.Unknown")

    # everything the roots reach
    keep: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        for f in messages[name].field:
            if f.type_name:
                todo.append(f.type_name[1:])

    table: dict[str, list[list[Any]]] = {}
    for name in sorted(keep):
        m = messages[name]
        if m.options.map_entry:
            continue
        fields: list[list[Any]] = []
        for f in sorted(m.field, key=lambda f: f.number):
            label = "repeated" if f.label == f.LABEL_REPEATED else "optional"
            ftype = _TYPES[f.type]
            type_name = f.type_name[1:]
            map_info: list[str] | None = None
            if type_name and messages[type_name].options.map_entry:
                entry = {e.number: e for e in messages[type_name].field}
                key, value = entry[1], entry[2]
                map_info = [_TYPES[key.type], _TYPES[value.type], value.type_name[1:]]
            fields.append(
                [f.name, f.number, label, ftype, type_name, map_info, _pointer(f), False, False]
            )
        table[name] = fields
    return {"kinds": dict(sorted(kinds.items())), "messages": table}


def schema_definitions(version: str) -> dict[str, Any]:
    """The OpenAPI definitions of Kubernetes `version` shipped by the PyPI package
    kubernetes-validate (JSON names and required fields of every type)."""
    import kubernetes_validate  # dev-time only

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    defs: dict[str, Any] = json.loads(
        (base / f"v{version}.0-local" / "_definitions.json").read_text()
    )
    return defs["$defs"]


def mark_json(table: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """Set the JSON name and the `required` and `inline` flags of each field from its
    message's OpenAPI definition: a message field that is no JSON property of its message is
    an embedded Go struct whose fields appear inline (`json:",inline"`); a name that differs
    from its JSON property only in case is renamed (`Webhooks`, `uID`). Returns the fields that
    fit neither."""
    problems: list[str] = []
    for name, fields in table["messages"].items():
        d = defs.get("io.k8s." + name.removeprefix("k8s.io."))
        if d is None or "properties" not in d:
            continue
        props = d["properties"]
        required = set(d.get("required", ()))
        lower = {p.lower(): p for p in props}
        for f in fields:
            if f[0] not in props and f[0].lower() in lower:  # proto name != JSON name
                f[0] = lower[f[0].lower()]
            f[7] = f[0] in required
            if f[0] in props:
                continue
            sub = table["messages"].get(f[4])
            if f[2] == "optional" and f[3] == "message" and sub is not None:
                inner = {g[0] for g in sub} | {
                    p for g in sub if g[8] for p in _inline_names(table, g[4])
                }
                if inner & set(props):
                    f[8] = True
                    continue
            problems.append(f"{name}.{f[0]}")
    return problems


def _inline_names(table: dict[str, Any], name: str) -> set[str]:
    return {g[0] for g in table["messages"].get(name, ())}


def dump(table: dict[str, Any]) -> str:
    lines = ["{", '"kinds": ' + json.dumps(table["kinds"], sort_keys=True) + ",", '"messages": {']
    names = sorted(table["messages"])
    for i, name in enumerate(names):
        sep = "," if i < len(names) - 1 else ""
        lines.append(f"{json.dumps(name)}: {json.dumps(table['messages'][name])}{sep}")
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    binary = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/bin/kubectl")
    version = sys.argv[2] if len(sys.argv) > 2 else "1.32"
    fds = extract(binary)
    wanted = {f"{pkg}/generated.proto" for pkg in FILES}
    missing = wanted - set(fds)
    if missing:
        sys.exit(f"not found in {binary}: {sorted(missing)}")
    table = build({n: fd for n, fd in fds.items() if n in wanted})
    problems = mark_json(table, schema_definitions(version))
    for p in problems:
        print(f"warning: {p} is no JSON property of its type", file=sys.stderr)
    OUT.write_text(dump(table))
    print(f"{OUT}: {len(table['kinds'])} kinds, {len(table['messages'])} messages")


if __name__ == "__main__":
    main()
