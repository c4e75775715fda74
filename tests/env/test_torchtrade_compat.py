"""Migrating from TorchTrade: `EnvConfig.from_torchtrade` on TorchTrade config dicts and dataclasses, and
TorchTrade's one warning, negative action levels at leverage 1 (docs/semantics.md §2.1, §4). No jit here."""

from __future__ import annotations

import dataclasses
import enum
import re
import warnings

import pytest

import trading_jax as tj
from tests.support.env_testlib import minute_frame

# The PPO example's env section, as TorchTrade's SequentialTradingEnvConfig fields (with the fee that fits, Q1).
TORCHTRADE_DICT = dict(
    symbol="BTC/USDT", time_frames=["1Hour"], window_sizes=[24], execute_on="1Hour", initial_cash=1000,
    transaction_fee=0.001, slippage=0.01, bankrupt_threshold=0.1, seed=0, include_base_features=False,
    max_traj_length=None, random_start=True, action_levels=[-1, 0.0, 1.0], leverage=3, margin_mode="ISOLATED",
    maintenance_margin_rate=0.004,
)  # fmt: skip
SYMBOL_WARNING = (
    "TorchTrade config field symbol='BTC/USDT' is dropped: it has no meaning in trading_jax's env, which trades "
    "whatever prices it is given; name the quote currency in plots instead "
    "(render_history(..., quote_currency='USD'))"
)
SEED_WARNING = (
    "TorchTrade config field seed=0 is dropped: every random draw takes an explicit key: use "
    "jax.random.PRNGKey(0) for reset / rollout, or reset(seed=0) on trading_jax.gym.GymnasiumEnv"
)
SPOT_WARNING = (
    "Negative action_levels (-1.0,) with leverage=1: short positions are not possible in spot mode, so negative "
    "levels act as 0 (flat). Remove the negative levels or set leverage > 1 (docs/semantics.md §2.1, §3.3)."
)


def messages(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_torchtrade_dict_with_seed_and_symbol():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = tj.EnvConfig.from_torchtrade(TORCHTRADE_DICT)
    assert messages(caught) == [SYMBOL_WARNING, SEED_WARNING]
    assert config == tj.EnvConfig(
        time_frames="1Hour", window_sizes=24, execute_on="1Hour", initial_cash=1000, transaction_fee=0.001,
        slippage=0.01, action_levels=(-1, 0, 1), leverage=3,
    )  # fmt: skip
    assert config.margin_mode == "isolated" and not config.sltp


class MarginMode(enum.Enum):  # TorchTrade's enum, as its dataclasses hold it
    ISOLATED = "ISOLATED"
    CROSSED = "CROSSED"


class TimeFrame:  # TorchTrade's TimeFrame after its config's __post_init__: read through obs_key_freq()
    def __init__(self, value: int, unit: str):
        self.value, self.unit = value, unit

    def obs_key_freq(self) -> str:
        return f"{self.value}{self.unit}"


@dataclasses.dataclass
class SequentialTradingEnvSLTPConfig:  # the field names and defaults of TorchTrade's class (a subset)
    symbol: str = "BTC/USD"
    time_frames: list = dataclasses.field(default_factory=lambda: [TimeFrame(5, "Minute"), TimeFrame(1, "Hour")])
    window_sizes: list = dataclasses.field(default_factory=lambda: [6, 4])
    execute_on: TimeFrame = dataclasses.field(default_factory=lambda: TimeFrame(5, "Minute"))
    seed: int = 42
    leverage: int = 2
    margin_mode: MarginMode = MarginMode.ISOLATED
    stoploss_levels: tuple = (-0.02,)
    takeprofit_levels: tuple = (0.03,)
    include_close_action: bool = True
    trade_mode: str = "notional"
    quantity_per_trade: float = 500.0


def test_sltp_dataclass_maps_to_brackets():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = tj.EnvConfig.from_torchtrade(SequentialTradingEnvSLTPConfig())
    assert [m.split(" is dropped")[0] for m in messages(caught)] == [
        "TorchTrade config field symbol='BTC/USD'", "TorchTrade config field seed=42"
    ]
    assert config.sltp and config.time_frames == ("5Minute", "1Hour") and config.execute_on == "5Minute"
    assert (config.window_sizes, config.leverage, config.trade_mode) == ((6, 4), 2, "notional")
    assert config.quantity_per_trade == 500
    assert (config.stoploss_levels, config.takeprofit_levels, config.include_close_action) == ((-0.02,), (0.03,), True)


def test_sltp_only_field_and_margin_type():
    config = tj.EnvConfig.from_torchtrade({"stoploss_levels": [-0.05], "margin_type": MarginMode.ISOLATED})
    assert config.sltp and config.stoploss_levels == (-0.05,) and config.margin_mode == "isolated"
    assert not tj.EnvConfig.from_torchtrade({"leverage": 2, "action_levels": [0, 1]}).sltp


@pytest.mark.parametrize(
    "mapping,message",
    [
        ({"train_envs": 8}, "unknown TorchTrade config key 'train_envs'; did you mean 'num_envs'? Known keys: ["),
        ({"levrage": 2}, "unknown TorchTrade config key 'levrage'; did you mean 'leverage'? Known keys: ["),
        ({"margin_mode": "ISOLATED", "margin_type": "ISOLATED"}, "give margin_mode or margin_type, not both"),
        ({"margin_mode": MarginMode.CROSSED}, "margin_mode must be 'isolated' (the only mode), got 'crossed'"),
        ({"include_base_features": True}, "include_base_features must be False"),
    ],
)
def test_bad_torchtrade_configs(mapping, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        tj.EnvConfig.from_torchtrade(mapping)


def test_from_torchtrade_rejects_other_objects():
    with pytest.raises(ValueError, match=r"takes a TorchTrade config dataclass .* got list$"):
        tj.EnvConfig.from_torchtrade([("leverage", 2)])


def test_num_envs_is_dropped_with_a_note():
    with pytest.warns(UserWarning) as caught:
        config = tj.EnvConfig.from_torchtrade({"num_envs": 64, "leverage": 2})
    assert messages(caught) == [
        "TorchTrade config field num_envs=64 is dropped: vmap reset/step over that many keys "
        "(tj.rollout(..., num_envs=64)), or set the trainer's env.num_envs"
    ]
    assert config.leverage == 2


FRAME = minute_frame([100, 101, 102, 103])
MARKET = dict(time_frames="1Min", execute_on="1Min", window_sizes=2)


@pytest.mark.parametrize(
    "config,warns",
    [
        (dict(leverage=1, action_levels=(-1, 0, 1)), True),  # TorchTrade's default config: it warns too
        (dict(leverage=3, action_levels=(-1, 0, 1)), False),
        (dict(leverage=1, action_levels=(0, 0.5, 1)), False),
        (dict(leverage=1, sltp=True), False),  # the bracket env installs placeholder levels: no warning
    ],
)
def test_spot_warning_for_negative_levels(config, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tj.make(FRAME, tj.EnvConfig(**MARKET, **config))
    assert messages(caught) == ([SPOT_WARNING] if warns else [])
