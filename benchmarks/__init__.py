"""Benchmark suite (``pytest benchmarks/ --benchmark-only``). A package so that its conftest and test
modules (test_token_mixing.py, ...) do not clash with the same-named ones in tests/."""
