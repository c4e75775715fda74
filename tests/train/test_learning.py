"""PPO learns a learnable pattern: a noisy sine, through `trading_jax.make`, judged on held-out bars.

Default network, optimiser and loss (BatchNorm in train mode during collection, dropout 0.1); slippage 0 so
that the comparison with the oracle is not blurred by fill noise. About 30-60 s on a 2-core CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.support.train_synth import episode_log_return, oracle_actions, sine_frame
from train.config import load_config
from train.data import build_setup
from train.ppo import train

PERIOD = 24


@pytest.mark.slow
def test_ppo_learns_the_sine(tmp_path):
    frame = sine_frame(2000, period=PERIOD)
    cfg = load_config(
        [
            "env.test_split_start=2024-03-10",  # 1632 training bars, 320 held-out bars
            "env.slippage=0",
            "collector.total_frames=128000",
            "eval.test_interval=1000000",
            "eval.train_max_steps=200",
            "logger.backend=none",
            "logger.progress=false",
            f"logger.run_dir={tmp_path}",
        ]
    )
    setup = build_setup(cfg, frame)
    test = setup.test
    assert test.num_steps == 319
    oracle_a = jnp.asarray(oracle_actions(test.market, PERIOD))
    oracle = episode_log_return(test, lambda k, s: oracle_a[s.bar], jax.random.PRNGKey(0))
    random = np.mean(
        [
            episode_log_return(test, lambda k, s: jax.random.randint(k, (), 0, 3), jax.random.PRNGKey(i))
            for i in range(8)
        ]
    )
    result = train(cfg, setup=setup)
    agent = result.evaluation["eval/reward"]
    buy_and_hold = result.evaluation["eval/bh_log_return"]
    print(
        f"held-out log return: agent {agent:.3f}, oracle {oracle:.3f}, random {random:.3f}, "
        f"buy-and-hold {buy_and_hold:.3f}"
    )
    assert oracle > 0.5
    assert agent >= 0.5 * oracle
    assert agent > random and agent > buy_and_hold
