"""`kybern metrics-server`: the resource metrics API (`metrics.k8s.io/v1beta1` NodeMetrics and
PodMetrics) as an aggregated API server built with `kybern.ext`, fed by pluggable `Source`s —
the agents' Summary API (`/stats/summary`), or zeros for simulated nodes and agents without
stats. `kubectl top` reads it through the API server's aggregator."""

from kybern.metricsserver.server import MetricsServer
from kybern.metricsserver.sources import (
    NodeSample,
    PodSample,
    Source,
    SummaryParser,
    SummarySource,
    Usage,
    ZeroSource,
)

__all__ = [
    "MetricsServer",
    "NodeSample",
    "PodSample",
    "Source",
    "SummaryParser",
    "SummarySource",
    "Usage",
    "ZeroSource",
]
