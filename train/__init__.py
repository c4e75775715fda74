"""PPO trainer for trading_jax: `python -m train.ppo`, `python -m train.evaluate RUN_DIR`."""
