"""The `kybern` multi-call command: parses flags, wires components, nothing else."""
