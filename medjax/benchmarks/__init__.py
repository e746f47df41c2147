"""Throughput benchmarks: `python -m medjax.benchmarks.<name>`."""
