"""The node agent (a kubelet): registers its Node and heartbeats, runs the pods bound to it
through any CRI runtime (sandboxes, init and app containers, probes, hooks, restarts with
back-off, graceful termination), provides their volumes, reports their status, writes the node's
CNI configuration and mirrors static pods. `Agent` with an `AgentConfig` is the whole agent;
`managed.LocalNode` is the node of `kybern up` with a containerd of its own. The HTTPS server for
logs/exec/attach lives beside it."""

from kybern.agent.agent import Agent, AgentConfig, ContainerRef

__all__ = ["Agent", "AgentConfig", "ContainerRef"]
