"""The node agent (a kubelet): registers its Node, heartbeats, and runs the pods bound to it
through any CRI runtime; serves logs, exec and attach to the API server."""
