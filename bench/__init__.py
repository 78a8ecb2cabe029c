"""Benchmarks anyone can rerun: `python -m bench.run_all` (see README.md, "Benchmarks")."""
