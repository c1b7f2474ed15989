"""Scheduler profiles, as `KubeSchedulerConfiguration` spells them: a scheduler name, plugin sets
per extension point (`multiPoint` plus `queueSort`, `preFilter`, `filter`, ..., each with
`enabled` plugins and weights and `disabled` names, `*` for all) and per-plugin arguments.
`from_config` merges a user profile onto the defaults exactly as kube-scheduler does, and
`expand` turns it into the ordered plugin list of each extension point."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

POINTS = (
    "queueSort",
    "preFilter",
    "filter",
    "postFilter",
    "preScore",
    "score",
    "reserve",
    "permit",
    "preBind",
    "bind",
    "postBind",
)


@dataclass(frozen=True)
class PluginSpec:
    name: str
    weight: int = 0  # 0: the default (1) or the multiPoint weight


@dataclass
class PluginSet:
    enabled: list[PluginSpec] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> PluginSet:
        cfg = cfg or {}
        return cls(
            [PluginSpec(p["name"], int(p.get("weight") or 0)) for p in cfg.get("enabled") or []],
            [p["name"] for p in cfg.get("disabled") or []],
        )


# kube-scheduler's default multiPoint set, minus volume, port, image and preemption plugins.
DEFAULT_PLUGINS: tuple[PluginSpec, ...] = (
    PluginSpec("PrioritySort"),
    PluginSpec("NodeUnschedulable"),
    PluginSpec("NodeName"),
    PluginSpec("TaintToleration", 3),
    PluginSpec("NodeAffinity", 2),
    PluginSpec("NodeResourcesFit", 1),
    PluginSpec("PodTopologySpread", 2),
    PluginSpec("InterPodAffinity", 2),
    PluginSpec("NodeResourcesBalancedAllocation", 1),
    PluginSpec("DefaultBinder"),
)


@dataclass
class Profile:
    scheduler_name: str = "default-scheduler"
    plugins: dict[str, PluginSet] = field(
        default_factory=lambda: {"multiPoint": PluginSet(list(DEFAULT_PLUGINS))}
    )
    plugin_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    percentage_of_nodes_to_score: int = 0  # 0: kube's adaptive default

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Profile:
        """A `KubeSchedulerProfile` (`schedulerName`, `plugins`, `pluginConfig`,
        `percentageOfNodesToScore`) merged onto the default profile."""
        base = cls()
        custom = {k: PluginSet.from_config(v) for k, v in (cfg.get("plugins") or {}).items()}
        unknown = set(custom) - {"multiPoint", *POINTS}
        if unknown:
            raise ValueError(f"unknown extension points: {sorted(unknown)}")
        plugins = {
            point: merge_plugin_sets(base.plugins.get(point), custom.get(point))
            for point in ("multiPoint", *POINTS)
        }
        return cls(
            scheduler_name=cfg.get("schedulerName") or base.scheduler_name,
            plugins={k: v for k, v in plugins.items() if v.enabled or v.disabled},
            plugin_config={
                c["name"]: dict(c.get("args") or {}) for c in cfg.get("pluginConfig") or []
            },
            percentage_of_nodes_to_score=int(cfg.get("percentageOfNodesToScore") or 0),
        )


def merge_plugin_sets(default: PluginSet | None, custom: PluginSet | None) -> PluginSet:
    """kube's `mergePluginSet`: custom-disabled defaults go (all for `*`); a custom-enabled
    plugin replaces the default of the same name in place, others are appended."""
    default = default or PluginSet()
    if custom is None:
        return PluginSet(list(default.enabled), list(default.disabled))
    disabled = set(custom.disabled)
    custom_by_name = {p.name: p for p in custom.enabled}
    out: list[PluginSpec] = []
    replaced: set[str] = set()
    if "*" not in disabled:
        for p in default.enabled:
            if p.name in disabled:
                continue
            if p.name in custom_by_name:
                out.append(custom_by_name[p.name])
                replaced.add(p.name)
            else:
                out.append(p)
    out.extend(p for p in custom.enabled if p.name not in replaced)
    return PluginSet(out, list(custom.disabled))


def expand(
    profile: Profile, implements: Callable[[str, str], bool]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """The ordered plugin names of each extension point and the score weights.

    `implements(plugin, point)` says whether a plugin has that extension point. Order, as in
    kube's `expandMultiPointPlugins`: plugins both in multiPoint and explicitly enabled at the
    point (an override), then the other multiPoint plugins, then the other explicit ones."""
    multi = profile.plugins.get("multiPoint") or PluginSet()
    points: dict[str, list[str]] = {}
    weights: dict[str, int] = {}
    for p in multi.enabled:
        if p.weight:
            weights[p.name] = p.weight
    for point in POINTS:
        explicit = profile.plugins.get(point) or PluginSet()
        enabled = [p.name for p in explicit.enabled]
        if len(set(enabled)) != len(enabled):
            raise ValueError(f"a plugin is enabled twice at {point}: {enabled}")
        if point == "score":
            for p in explicit.enabled:
                if p.weight:
                    weights[p.name] = p.weight
        disabled = set(explicit.disabled)
        multi_enabled: list[str] = []
        overrides: set[str] = set()
        if "*" not in disabled:
            for p in multi.enabled:
                if not implements(p.name, point) or p.name in disabled:
                    continue
                if p.name in enabled:
                    overrides.add(p.name)
                    continue
                if p.name in multi_enabled:
                    raise ValueError(f"plugin {p.name!r} already registered at {point}")
                multi_enabled.append(p.name)
        for name in enabled:
            if not implements(name, point):
                raise ValueError(f"plugin {name!r} does not extend {point}")
        ordered = [n for n in enabled if n in overrides] + multi_enabled
        ordered += [n for n in enabled if n not in overrides]
        points[point] = ordered
    for name in points["score"]:
        weights.setdefault(name, 1)
    return points, {n: w for n, w in weights.items() if n in points["score"]}
