"""Micro-benchmarks of plexhpc's single-process parts (pytest-benchmark); see
``benchmarks/README.md``."""
