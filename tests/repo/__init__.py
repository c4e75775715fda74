"""Whole-repository checks: README commands, clean notebooks, benchmarks, import layers."""
