"""Simulated nodes (like kwok): register nodes that heartbeat, accept bound pods and report them
Running without containers, so controllers and the scheduler can be exercised at scale."""
