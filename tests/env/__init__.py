"""Tests of the `trading_jax` package."""
