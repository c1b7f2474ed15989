"""Benchmarks of kybern; run `python -m bench.api` (see docs/benchmarks.md)."""
