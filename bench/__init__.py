"""Benchmark scripts that print numbers (not tests). `nab_scoring` is importable by the tests."""
