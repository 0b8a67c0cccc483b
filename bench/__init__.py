"""Benchmarks: each module runs as ``python -m bench.<name> [--quick] [--json PATH]``."""
