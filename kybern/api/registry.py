"""The resource registry: one `Resource` entry per served kind (built-in or CRD) saying how the
API server treats it — group/version/kind, plural/singular/short names, scope, verbs,
subresources, name rule, extra field selectors and the storage key layout. Adding a built-in
kind is one entry in `BUILTIN`; CRDs add entries at run time. A built-in kind served in more
than one version has its `BUILTIN` entry in the version it is stored in (the group's preferred
one) and an entry in `OTHER_VERSIONS` per further version, sharing the storage key layout and
naming the stored one in `storage_version` (their objects are converted by
`kybern.api.conversion` on every read and write). `COMPUTED` holds the core kinds answered
without storage (legacy `bindings`, `componentstatuses`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: frozenset[str] = frozenset()
    name_rule: str = "subdomain"  # subdomain | label | dns1035 | path
    field_selectors: tuple[str, ...] = ()  # beyond metadata.name / metadata.namespace
    has_spec: bool = True  # generation is bumped on changes outside metadata/status
    crd: bool = False
    virtual: bool = False  # answered by the server, never stored (reviews, `COMPUTED`)
    list_kind_name: str = ""
    storage_group: str = field(default="")  # set when storage differs from group
    # the version a built-in kind is stored in when this entry serves another one
    storage_version: str = ""
    # objects are converted between versions on the way in and out: a custom resource (its CRD
    # says how) or a built-in kind served in a version it is not stored in
    converted: bool = field(init=False, default=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "converted", self.crd or bool(self.storage_version))

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def storage_api_version(self) -> str:
        """The apiVersion of the stored objects of a built-in kind."""
        version = self.storage_version or self.version
        return f"{self.group}/{version}" if self.group else version

    @property
    def list_kind(self) -> str:
        return self.list_kind_name or self.kind + "List"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def key_prefix(self) -> str:
        """`/registry/<resource>/` for the core group, `/registry/<group>/<resource>/` else."""
        group = self.storage_group or self.group
        return f"/registry/{group}/{self.plural}/" if group else f"/registry/{self.plural}/"

    def key(self, namespace: str, name: str) -> str:
        if self.namespaced:
            return f"{self.key_prefix}{namespace}/{name}"
        return self.key_prefix + name

    def namespace_prefix(self, namespace: str) -> str:
        return (
            f"{self.key_prefix}{namespace}/" if self.namespaced and namespace else self.key_prefix
        )

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def qualified(self) -> str:
        """`deployments.apps`, or `pods` for the core group (as in error messages)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_S = frozenset({"status"})
_SCALE = frozenset({"status", "scale"})
_WORKLOAD = ("all",)


def _r(gv: str, kind: str, plural: str, namespaced: bool = True, **kw: Any) -> Resource:
    group, _, version = gv.rpartition("/")
    return Resource(
        group=group, version=version, kind=kind, plural=plural, namespaced=namespaced, **kw
    )


BUILTIN: tuple[Resource, ...] = (
    # core/v1
    _r(
        "v1",
        "Namespace",
        "namespaces",
        False,
        short_names=("ns",),
        subresources=frozenset({"status", "finalize"}),
        name_rule="label",
        field_selectors=("status.phase",),
        has_spec=False,
    ),
    _r(
        "v1",
        "Pod",
        "pods",
        short_names=("po",),
        categories=_WORKLOAD,
        subresources=frozenset(
            {"status", "binding", "eviction", "log", "exec", "attach", "portforward"}
        ),
        field_selectors=(
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
    ),
    _r(
        "v1",
        "Node",
        "nodes",
        False,
        short_names=("no",),
        subresources=_S,
        field_selectors=("spec.unschedulable",),
    ),
    _r(
        "v1",
        "Service",
        "services",
        short_names=("svc",),
        categories=_WORKLOAD,
        subresources=_S,
        name_rule="dns1035",
        field_selectors=("spec.clusterIP", "spec.type"),
    ),
    _r("v1", "Endpoints", "endpoints", short_names=("ep",), has_spec=False),
    _r("v1", "ConfigMap", "configmaps", short_names=("cm",), has_spec=False),
    _r("v1", "Secret", "secrets", field_selectors=("type",), has_spec=False),
    _r(
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        short_names=("sa",),
        has_spec=False,
        subresources=frozenset({"token"}),
    ),
    _r(
        "v1",
        "Event",
        "events",
        short_names=("ev",),
        has_spec=False,
        field_selectors=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    _r("v1", "PersistentVolume", "persistentvolumes", False, short_names=("pv",), subresources=_S),
    _r(
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        short_names=("pvc",),
        subresources=_S,
    ),
    _r(
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        short_names=("rc",),
        categories=_WORKLOAD,
        subresources=_SCALE,
        field_selectors=("status.replicas",),
    ),
    _r("v1", "LimitRange", "limitranges", short_names=("limits",)),
    _r("v1", "ResourceQuota", "resourcequotas", short_names=("quota",), subresources=_S),
    _r("v1", "PodTemplate", "podtemplates", has_spec=False),
    # apps/v1
    _r(
        "apps/v1",
        "Deployment",
        "deployments",
        short_names=("deploy",),
        categories=_WORKLOAD,
        subresources=_SCALE,
    ),
    _r(
        "apps/v1",
        "ReplicaSet",
        "replicasets",
        short_names=("rs",),
        categories=_WORKLOAD,
        subresources=_SCALE,
        field_selectors=("status.replicas",),
    ),
    _r(
        "apps/v1",
        "StatefulSet",
        "statefulsets",
        short_names=("sts",),
        categories=_WORKLOAD,
        subresources=_SCALE,
    ),
    _r(
        "apps/v1",
        "DaemonSet",
        "daemonsets",
        short_names=("ds",),
        categories=_WORKLOAD,
        subresources=_S,
    ),
    _r("apps/v1", "ControllerRevision", "controllerrevisions", has_spec=False),
    # batch/v1
    _r(
        "batch/v1",
        "Job",
        "jobs",
        categories=_WORKLOAD,
        subresources=_S,
        field_selectors=("status.successful",),
    ),
    _r(
        "batch/v1",
        "CronJob",
        "cronjobs",
        short_names=("cj",),
        categories=_WORKLOAD,
        subresources=_S,
    ),
    # others
    _r("coordination.k8s.io/v1", "Lease", "leases", has_spec=False),
    _r("events.k8s.io/v1", "Event", "events", short_names=("ev",), has_spec=False),
    _r(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "endpointslices",
        has_spec=False,
        field_selectors=("addressType",),
    ),
    _r(
        "policy/v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        short_names=("pdb",),
        subresources=_S,
    ),
    _r("rbac.authorization.k8s.io/v1", "Role", "roles", name_rule="path", has_spec=False),
    _r(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
        False,
        name_rule="path",
        has_spec=False,
    ),
    _r(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        name_rule="path",
        has_spec=False,
    ),
    _r(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        False,
        name_rule="path",
        has_spec=False,
    ),
    _r(
        "storage.k8s.io/v1",
        "StorageClass",
        "storageclasses",
        False,
        short_names=("sc",),
        has_spec=False,
    ),
    _r("storage.k8s.io/v1", "CSIDriver", "csidrivers", False),
    _r("storage.k8s.io/v1", "CSINode", "csinodes", False),
    _r("storage.k8s.io/v1", "VolumeAttachment", "volumeattachments", False, subresources=_S),
    _r(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=_S,
    ),
    _r(
        "apiregistration.k8s.io/v1",
        "APIService",
        "apiservices",
        False,
        categories=("api-extensions",),
        subresources=_S,
        name_rule="path",
    ),
    _r(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
        categories=("api-extensions",),
        has_spec=False,
    ),
    _r(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
        categories=("api-extensions",),
        has_spec=False,
    ),
    # networking, scheduling, node, autoscaling, certificates, storage capacity, admission
    # policies and API priority and fairness (the last two stored only: nothing enforces them)
    _r(
        "networking.k8s.io/v1",
        "Ingress",
        "ingresses",
        short_names=("ing",),
        subresources=_S,
    ),
    _r("networking.k8s.io/v1", "IngressClass", "ingressclasses", False),
    _r("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", short_names=("netpol",)),
    _r(
        "scheduling.k8s.io/v1",
        "PriorityClass",
        "priorityclasses",
        False,
        short_names=("pc",),
        has_spec=False,
    ),
    _r("node.k8s.io/v1", "RuntimeClass", "runtimeclasses", False, has_spec=False),
    _r(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        short_names=("hpa",),
        categories=_WORKLOAD,
        subresources=_S,
    ),
    _r(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        False,
        short_names=("csr",),
        subresources=frozenset({"status", "approval"}),
        name_rule="path",
        field_selectors=("spec.signerName",),
    ),
    _r(
        "storage.k8s.io/v1",
        "CSIStorageCapacity",
        "csistoragecapacities",
        has_spec=False,
    ),
    _r(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        False,
        categories=("api-extensions",),
        subresources=_S,
    ),
    _r(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        False,
        categories=("api-extensions",),
    ),
    _r(
        "flowcontrol.apiserver.k8s.io/v1",
        "FlowSchema",
        "flowschemas",
        False,
        subresources=_S,
        name_rule="path",
    ),
    _r(
        "flowcontrol.apiserver.k8s.io/v1",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
        False,
        subresources=_S,
        name_rule="path",
    ),
)

# The further versions some built-in kinds are served in, as kube-apiserver 1.32 serves them:
# each is stored as its kind's `BUILTIN` entry says (`storage_version`), and a registry holding
# that entry serves it too, listed after it (the storage version is the group's preferred one).
OTHER_VERSIONS: tuple[Resource, ...] = (
    _r(
        "autoscaling/v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        short_names=("hpa",),
        categories=_WORKLOAD,
        subresources=_S,
        storage_version="v2",
    ),
)


# The core/v1 resources kube-apiserver answers without storing them (`virtual`, so no storage
# or watch cache is set up for them): the legacy `bindings` (create only: binds the pod the
# Binding names, as `pods/binding` does) and `componentstatuses` (get and list only: computed
# on each request, deprecated since 1.19). The API server's handlers add them to its registry.
COMPUTED: tuple[Resource, ...] = (
    _r("v1", "Binding", "bindings", verbs=("create",), has_spec=False, virtual=True),
    _r(
        "v1",
        "ComponentStatus",
        "componentstatuses",
        False,
        short_names=("cs",),
        verbs=("get", "list"),
        has_spec=False,
        virtual=True,
    ),
)


class Registry:
    """The served resources, indexed for routing (by group/version/plural) and lookups by kind;
    a built-in kind's `OTHER_VERSIONS` come with it. Mutable at run time: CRDs are added and
    removed while the server runs."""

    def __init__(self, resources: Iterable[Resource] = BUILTIN) -> None:
        self._by_path: dict[tuple[str, str, str], Resource] = {}
        self._by_kind: dict[tuple[str, str, str], Resource] = {}
        self.generation = 0  # bumped on every change, so discovery caches can be rebuilt
        for r in resources:
            self.add(r)
        for r in OTHER_VERSIONS:
            stored = self.by_kind(r.group, r.storage_version, r.kind)
            if stored is not None and not stored.crd:
                self.add(r)

    def add(self, r: Resource) -> None:
        self._by_path[(r.group, r.version, r.plural)] = r
        self._by_kind[(r.group, r.version, r.kind)] = r
        self.generation += 1

    def remove(self, r: Resource) -> None:
        self._by_path.pop((r.group, r.version, r.plural), None)
        self._by_kind.pop((r.group, r.version, r.kind), None)
        self.generation += 1

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> Resource | None:
        return self._by_kind.get((group, version, kind))

    def all(self) -> list[Resource]:
        return list(self._by_path.values())

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions (preferred first)."""
        out: dict[str, list[str]] = {}
        for g, v, _ in self._by_path:
            versions = out.setdefault(g, [])
            if v not in versions:
                versions.append(v)
        return out

    def resources_in(self, group: str, version: str) -> list[Resource]:
        return [r for (g, v, _), r in self._by_path.items() if g == group and v == version]
