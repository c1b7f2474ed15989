"""Simulated nodes (like kwok): register nodes that heartbeat, accept bound pods and report them
Running without containers, so controllers and the scheduler can be exercised at scale.
`SimNodes` is the runtime; `objects` holds the pure node, lease and pod-status builders."""

from kybern.simnodes import objects
from kybern.simnodes.simnodes import SimNodes, Statistics

__all__ = ["SimNodes", "Statistics", "objects"]
