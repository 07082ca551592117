"""Benchmark programs (not tests): see bench/README.md."""
