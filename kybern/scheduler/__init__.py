"""The scheduler: a plugin framework shaped like kube-scheduler's (queue sort, pre-filter,
filter, post-filter, pre-score, score, reserve, permit, pre-bind, bind, post-bind) over an
in-memory cache of nodes and assumed pods, built on `kybern.client`. `Scheduler` is the entry
point; `framework` holds the plugin vocabulary, `profile` the configuration, `plugins` the
in-tree plugins and their registry."""

from kybern.scheduler import framework, plugins, profile
from kybern.scheduler.cache import Cache
from kybern.scheduler.framework import Code, CycleState, Status
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo
from kybern.scheduler.profile import Profile
from kybern.scheduler.queue import SchedulingQueue
from kybern.scheduler.runtime import Framework
from kybern.scheduler.scheduler import Scheduler, Statistics

__all__ = [
    "Cache",
    "Code",
    "CycleState",
    "Framework",
    "NodeInfo",
    "PodInfo",
    "Profile",
    "Scheduler",
    "SchedulingQueue",
    "Statistics",
    "Status",
    "framework",
    "plugins",
    "profile",
]
