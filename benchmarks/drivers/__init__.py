"""Helpers of benchmarks/bench_drivers.py: the servers it measures against and wrk's pacing script."""
