"""Benchmarks: scripts that print results (recorded in bench/RESULTS.md), never tests."""
