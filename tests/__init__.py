"""The test suite; its layout mirrors the packages (env/ for trading_jax, train/, repo/ for whole-repository checks)."""
