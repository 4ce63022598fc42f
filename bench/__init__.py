"""Benchmarks run by `make bench`; results are recorded in docs/BENCHMARKS.md with the machine."""
