"""Tests of the `train` package (the PPO trainer)."""
