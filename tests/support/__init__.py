"""Shared test helpers: the NumPy oracle, the golden-trace loader and replay, env scripts, synthetic markets."""
