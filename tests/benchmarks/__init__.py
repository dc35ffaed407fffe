"""Tests of the pure pieces of the benchmark scripts (benchmarks/ is not a package: see load_script)."""
