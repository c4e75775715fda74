"""Throughput and memory benchmarks of trading_jax (see benchmarks/README.md).

Kept free of JAX imports so that the baseline worker processes (spawned) start fast.
"""
