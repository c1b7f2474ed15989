"""The scheduling framework's vocabulary, shaped like kube-scheduler's `framework/interface.go`:
`Status` with its codes, `CycleState`, the plugin protocols of every extension point (queue
sort, pre-filter, filter, post-filter, pre-score, score with normalize, reserve, permit,
pre-bind, bind, post-bind, plus enqueue extensions naming the cluster events that can make a
rejected pod schedulable), `Handle` (what a plugin factory gets), and the `Registry` of plugin
factories by name. Plugins return a `Status` (or None for success, as Go returns nil) for every
expected outcome; only bugs and transport failures raise."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import orjson

from kybern.scheduler.nodeinfo import NodeInfo, PodInfo

if TYPE_CHECKING:
    from kybern.client import informer, rest

MAX_NODE_SCORE = 100
MIN_NODE_SCORE = 0


class Code(enum.IntEnum):
    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    WAIT = 4
    SKIP = 5


class Status:
    """The result of a plugin call: a code, human-readable reasons, the plugin that produced it
    and, for `ERROR`, the exception. `None` stands for success wherever a Status is returned."""

    __slots__ = ("code", "error", "plugin", "reasons")

    def __init__(
        self,
        code: Code = Code.SUCCESS,
        *reasons: str,
        plugin: str = "",
        error: BaseException | None = None,
    ) -> None:
        self.code = code
        self.reasons: tuple[str, ...] = reasons
        self.plugin = plugin
        self.error = error

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def is_success(self) -> bool:
        return self.code == Code.SUCCESS

    def is_skip(self) -> bool:
        return self.code == Code.SKIP

    def is_wait(self) -> bool:
        return self.code == Code.WAIT

    def is_rejected(self) -> bool:
        """Unschedulable or UnschedulableAndUnresolvable (kube's `IsRejected`)."""
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    def with_plugin(self, plugin: str) -> Status:
        return Status(self.code, *self.reasons, plugin=plugin, error=self.error)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Status) and (self.code, self.reasons) == (
            other.code,
            other.reasons,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        extra = f", plugin={self.plugin!r}" if self.plugin else ""
        return f"Status({self.code.name}, {self.message!r}{extra})"


def unschedulable(*reasons: str) -> Status:
    return Status(Code.UNSCHEDULABLE, *reasons)


def unresolvable(*reasons: str) -> Status:
    return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, *reasons)


def as_status(err: BaseException) -> Status:
    return Status(Code.ERROR, str(err) or type(err).__name__, error=err)


SKIP = Status(Code.SKIP)


def is_success(status: Status | None) -> bool:
    return status is None or status.code == Code.SUCCESS


class CycleState:
    """Per-cycle scratch space shared by the plugins of one pod's scheduling attempt, plus the
    sets of plugins whose filter/score are skipped (they returned Skip from pre-filter or
    pre-score)."""

    __slots__ = ("_data", "skip_filter_plugins", "skip_score_plugins")

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self.skip_filter_plugins: set[str] = set()
        self.skip_score_plugins: set[str] = set()

    def read(self, key: str) -> Any:
        """The value a plugin wrote under `key`; KeyError if it never did."""
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def write(self, key: str, value: Any) -> None:
        self._data[key] = value

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def clone(self) -> CycleState:
        c = CycleState()
        c._data = {k: (v.clone() if hasattr(v, "clone") else v) for k, v in self._data.items()}
        c.skip_filter_plugins = set(self.skip_filter_plugins)
        c.skip_score_plugins = set(self.skip_score_plugins)
        return c


# ---- cluster events (what can make a rejected pod schedulable) -----------------------------


class ActionType(enum.IntFlag):
    ADD = 1
    DELETE = 2
    UPDATE_NODE_ALLOCATABLE = 4
    UPDATE_NODE_LABEL = 8
    UPDATE_NODE_TAINT = 16
    UPDATE_NODE_CONDITION = 32
    UPDATE_POD_LABEL = 64
    UPDATE_POD_SCALE_DOWN = 128
    UPDATE_OTHER = 256
    UPDATE = (
        UPDATE_NODE_ALLOCATABLE
        | UPDATE_NODE_LABEL
        | UPDATE_NODE_TAINT
        | UPDATE_NODE_CONDITION
        | UPDATE_POD_LABEL
        | UPDATE_POD_SCALE_DOWN
        | UPDATE_OTHER
    )
    ALL = ADD | DELETE | UPDATE


NODE, ASSIGNED_POD, NAMESPACE, WILDCARD = "Node", "Pod", "Namespace", "*"


@dataclass(frozen=True)
class ClusterEvent:
    """A change to `resource` ("Node", "Pod" for assigned pods, "Namespace", "*") of kinds
    `action`; a plugin registers the events that may resolve its rejections."""

    resource: str
    action: ActionType
    label: str = ""

    def matches(self, other: ClusterEvent) -> bool:
        """True when this registered event covers the `other` event that happened."""
        if self.resource == WILDCARD and self.action == ActionType.ALL:
            return True
        return (self.resource in (WILDCARD, other.resource)) and bool(self.action & other.action)


EVENT_NODE_ADD = ClusterEvent(NODE, ActionType.ADD, "NodeAdd")
EVENT_ASSIGNED_POD_DELETE = ClusterEvent(ASSIGNED_POD, ActionType.DELETE, "AssignedPodDelete")
EVENT_UNSCHEDULABLE_TIMEOUT = ClusterEvent(WILDCARD, ActionType.ALL, "UnschedulableTimeout")
EVENT_FORCE_ACTIVATE = ClusterEvent(WILDCARD, ActionType.ALL, "ForceActivate")


# ---- results --------------------------------------------------------------------------------


@dataclass
class PreFilterResult:
    """`node_names` restricts the nodes to evaluate (None: all nodes)."""

    node_names: set[str] | None = None

    def merge(self, other: PreFilterResult | None) -> PreFilterResult:
        if other is None or other.node_names is None:
            return self
        if self.node_names is None:
            return PreFilterResult(set(other.node_names))
        return PreFilterResult(self.node_names & other.node_names)


@dataclass
class PostFilterResult:
    nominated_node_name: str = ""


@dataclass
class Diagnosis:
    """Why a pod fits nowhere: the status of every node that was evaluated, the plugins that
    rejected it, and the messages of pre-filter and post-filter failures."""

    node_to_status: dict[str, Status] = field(default_factory=dict)
    unschedulable_plugins: set[str] = field(default_factory=set)
    pre_filter_msg: str = ""
    post_filter_msg: str = ""


class FitError(Exception):
    """No node fits; `str()` is kube-scheduler's message (`0/3 nodes are available: ...`)."""

    def __init__(self, pod: PodInfo, num_all_nodes: int, diagnosis: Diagnosis) -> None:
        super().__init__()
        self.pod = pod
        self.num_all_nodes = num_all_nodes
        self.diagnosis = diagnosis

    def __str__(self) -> str:
        msg = f"0/{self.num_all_nodes} nodes are available:"
        d = self.diagnosis
        if d.pre_filter_msg:
            msg += f" {d.pre_filter_msg}."
        else:
            counts: dict[str, int] = {}
            for status in d.node_to_status.values():
                for reason in status.reasons:
                    counts[reason] = counts.get(reason, 0) + 1
            histogram = sorted(f"{n} {reason}" for reason, n in counts.items())
            if histogram:
                msg += f" {', '.join(histogram)}."
        if d.post_filter_msg:
            msg += f" {d.post_filter_msg}."
        return msg


# ---- plugins --------------------------------------------------------------------------------


class Snapshot(Protocol):
    """The nodes (and the pods on them) a scheduling cycle sees."""

    def node_infos(self) -> list[NodeInfo]: ...

    def get(self, name: str) -> NodeInfo | None: ...

    def have_pods_with_affinity(self) -> list[NodeInfo]: ...

    def have_pods_with_required_anti_affinity(self) -> list[NodeInfo]: ...


@runtime_checkable
class Plugin(Protocol):
    name: ClassVar[str]


@runtime_checkable
class QueueSortPlugin(Plugin, Protocol):
    def less(self, a: QueuedPodInfo, b: QueuedPodInfo) -> bool: ...


@runtime_checkable
class EnqueueExtensions(Plugin, Protocol):
    def events_to_register(self) -> list[ClusterEvent]: ...


@runtime_checkable
class PreFilterPlugin(Plugin, Protocol):
    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]: ...


@runtime_checkable
class FilterPlugin(Plugin, Protocol):
    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None: ...


@runtime_checkable
class BatchFilterPlugin(Plugin, Protocol):
    """An optional capability of a filter plugin: filter many nodes in one call. The result
    must equal calling `filter` on each node; only failures are returned, by index."""

    def filter_nodes(
        self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> dict[int, Status]: ...


@runtime_checkable
class SignPlugin(Plugin, Protocol):
    """An optional capability of a filter or score plugin (kube's `SignPod`, from opportunistic
    batching): a hashable signature of what the plugin reads of `pod`, such that its `filter`
    result and its raw `score` (before normalization) on a node depend only on the signature
    and that node's `NodeInfo` (what its pre-filter/pre-score write is derived from the pod
    alone). The framework then keeps each node's result per signature and recomputes it only
    for nodes that changed. None: no signature for this pod (evaluated every cycle)."""

    def sign_pod(self, pod: PodInfo) -> Hashable | None: ...


def freeze(value: Any) -> bytes:
    """A hashable, order-independent form of a JSON value (for pod signatures)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@runtime_checkable
class PostFilterPlugin(Plugin, Protocol):
    def post_filter(
        self, state: CycleState, pod: PodInfo, statuses: Mapping[str, Status]
    ) -> tuple[PostFilterResult | None, Status | None]: ...


@runtime_checkable
class PreScorePlugin(Plugin, Protocol):
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        """Skip means the plugin's score is not called in this cycle."""
        ...


@runtime_checkable
class ScorePlugin(Plugin, Protocol):
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        """The node's score (0..100 after normalization); errors raise."""
        ...


@runtime_checkable
class ScoreExtensions(Plugin, Protocol):
    def normalize_score(
        self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]
    ) -> Status | None:
        """Rewrite `scores` (aligned with `nodes`) in place into 0..MAX_NODE_SCORE."""
        ...


@runtime_checkable
class UniformNormalizePlugin(Plugin, Protocol):
    """An optional capability of a score plugin with `normalize_score`: when every node's raw
    score is `score`, `normalize_score` makes every node's score `normalize_uniform(score)`,
    whatever the nodes and however many (the framework then skips the per-node pass)."""

    def normalize_uniform(self, state: CycleState, pod: PodInfo, score: int) -> int: ...


@runtime_checkable
class BatchScorePlugin(Plugin, Protocol):
    """An optional capability of a score plugin: score every node in one call (what `score`
    returns for each, in order) — fewer Python calls per cycle."""

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]: ...


@runtime_checkable
class ReservePlugin(Plugin, Protocol):
    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None: ...

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None: ...


@runtime_checkable
class PermitPlugin(Plugin, Protocol):
    def permit(
        self, state: CycleState, pod: PodInfo, node_name: str
    ) -> tuple[Status | None, float]:
        """(status, timeout seconds): Wait holds the pod until allowed, rejected or timed out."""
        ...


@runtime_checkable
class PreBindPlugin(Plugin, Protocol):
    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None: ...


@runtime_checkable
class BindPlugin(Plugin, Protocol):
    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        """Skip passes the pod to the next bind plugin."""
        ...


@runtime_checkable
class PostBindPlugin(Plugin, Protocol):
    def post_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> None: ...


EXTENSION_POINTS: dict[str, Any] = {  # point -> runtime-checkable protocol
    "queueSort": QueueSortPlugin,
    "preFilter": PreFilterPlugin,
    "filter": FilterPlugin,
    "postFilter": PostFilterPlugin,
    "preScore": PreScorePlugin,
    "score": ScorePlugin,
    "reserve": ReservePlugin,
    "permit": PermitPlugin,
    "preBind": PreBindPlugin,
    "bind": BindPlugin,
    "postBind": PostBindPlugin,
}


class QueuedPodInfo:
    """A pod in the scheduling queue with its attempt bookkeeping."""

    __slots__ = (
        "attempts",
        "initial_attempt_timestamp",
        "pod_info",
        "timestamp",
        "unschedulable_plugins",
    )

    def __init__(self, pod_info: PodInfo, timestamp: float) -> None:
        self.pod_info = pod_info
        self.timestamp = timestamp
        self.initial_attempt_timestamp = timestamp
        self.attempts = 0
        self.unschedulable_plugins: set[str] = set()

    @property
    def key(self) -> str:
        return self.pod_info.key

    def __repr__(self) -> str:
        return f"QueuedPodInfo({self.key}, attempts={self.attempts})"


class WaitingPod:
    """A pod held at permit: each waiting plugin must `allow`; any `reject` fails it."""

    def __init__(self, pod: PodInfo, plugins: dict[str, float]) -> None:
        self.pod = pod
        self.pending = set(plugins)
        self.result: asyncio.Future[Status | None] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        self._timers = [
            loop.call_later(t, self.reject, name, f"rejected due to timeout after waiting {t}s")
            for name, t in plugins.items()
        ]

    def allow(self, plugin: str) -> None:
        self.pending.discard(plugin)
        if not self.pending:
            self._finish(None)

    def reject(self, plugin: str, message: str) -> None:
        self._finish(Status(Code.UNSCHEDULABLE, message, plugin=plugin))

    def _finish(self, status: Status | None) -> None:
        for t in self._timers:
            t.cancel()
        if not self.result.done():
            self.result.set_result(status)


@dataclass
class Handle:
    """What plugin factories receive: the API client (binders), the snapshot of nodes, the
    namespaces' labels (for affinity namespace selectors), the waiting pods, and the informer
    factory plus cluster-event sink for plugins that watch more kinds (VolumeBinding)."""

    snapshot: Snapshot
    client: rest.Client | None = None
    scheduler_name: str = "default-scheduler"
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    waiting_pods: dict[str, WaitingPod] = field(default_factory=dict)
    # the scheduler's shared informers (plugins add theirs before it starts them) and the
    # queue's entry for cluster events those informers see
    informer_factory: informer.InformerFactory | None = None
    on_event: Callable[[ClusterEvent], None] | None = None

    def get_waiting_pod(self, uid: str) -> WaitingPod | None:
        return self.waiting_pods.get(uid)


PluginFactory = Callable[[Mapping[str, Any], Handle], Plugin]


class Registry:
    """Plugin factories by name; in-tree plugins are listed explicitly (`plugins.in_tree()`),
    others can be merged in."""

    def __init__(self, factories: Mapping[str, PluginFactory] | None = None) -> None:
        self._factories: dict[str, PluginFactory] = dict(factories or {})

    def register(self, name: str, factory: PluginFactory) -> None:
        if name in self._factories:
            raise ValueError(f"a plugin named {name} already exists")
        self._factories[name] = factory

    def unregister(self, name: str) -> None:
        if self._factories.pop(name, None) is None:
            raise ValueError(f"no plugin named {name} exists")

    def merge(self, other: Registry) -> None:
        for name, f in other._factories.items():
            self.register(name, f)

    def factory(self, name: str) -> PluginFactory:
        try:
            return self._factories[name]
        except KeyError:
            raise ValueError(f"plugin {name!r} is not registered") from None

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
