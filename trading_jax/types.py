"""The env's types: state, params, trade labels and bracket sides (docs/semantics.md §2.2, §3.14, §4.1)."""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
from flax import struct

from trading_jax.market import MarketData

#: The account part of the observation, in order (docs/semantics.md §1.7.1).
ACCOUNT_FEATURES = (
    "exposure",
    "position_direction",
    "unrealized_pnl_pct",
    "holding_time",
    "leverage",
    "distance_to_liquidation",
)


class ActionKind(enum.IntEnum):
    """Integer codes of the trade labels (docs/semantics.md §3.14, §4.2); `info["action_kind"]` holds them."""

    HOLD = 0
    BUY = 1
    SELL = 2
    LONG = 3
    SHORT = 4
    FLAT = 5
    CLOSE_PARTIAL = 6
    LIQUIDATION = 7
    CLOSE = 8
    SLTP_SL = 9
    SLTP_TP = 10

    @property
    def label(self) -> str:
        return self.name.lower()


class BracketSide(enum.IntEnum):
    """What a bracket-mode action does (docs/semantics.md §4.1)."""

    HOLD = 0
    CLOSE = 1
    LONG = 2
    SHORT = 3


@struct.dataclass
class EnvState:
    """One lane's state: every leaf is a scalar array (`[num_envs]` under vmap).

    Only what cannot be derived is stored: the portfolio value is `portfolio_value(state, params)`, the
    hold counter's direction is `sign(position)`, and the episode is exhausted when `bar + 1 >= end`.
    """

    bar: jax.Array  # int32, current execution bar i (the agent has seen bar i)
    start: jax.Array  # int32, first bar of the episode
    end: jax.Array  # int32, one past the episode's last bar
    balance: jax.Array  # money, free cash
    position: jax.Array  # money, signed size in base units (> 0 long, < 0 short)
    entry: jax.Array  # money, entry price (0 when flat)
    hold: jax.Array  # int32, holding-time counter (§3.9)
    prev_action: jax.Array  # int32, last action index (-1: none yet) for the same-action shortcut
    initial_pv: jax.Array  # money, this episode's starting cash
    peak_pv: jax.Array  # money, highest portfolio value of this episode (for drawdown rewards)
    stop_loss: jax.Array  # money, bracket stop price (0: none)
    take_profit: jax.Array  # money, bracket target price (0: none)

    @property
    def exhausted(self) -> jax.Array:
        """The episode's last bar has been read: the next step returns the exhaustion response (§3.11)."""
        return self.bar + 1 >= self.end

    @property
    def step_count(self) -> jax.Array:
        """Bars advanced in this episode (exhaustion responses do not advance)."""
        return self.bar - self.start


class ParamsLayout(NamedTuple):
    """What the shapes and the branch of a step depend on: the params' static signature.

    `TradingEnv` compares it with its own on the host, whenever `reset`/`step` is traced, so params built
    for another window, feature set or trade mode cannot run silently. The number of actions is not part
    of it: it is the length of the params' action tables (padded tables, as in the oracle tests, work).
    """

    window_sizes: tuple[int, ...]
    feature_sizes: tuple[int, ...]
    sltp: bool


@struct.dataclass
class EnvParams:
    """Everything numeric: market arrays and settings. A pytree, so it can be vmapped (e.g. over fees).

    `layout` is static (not a leaf): under `jit` it is part of the tree structure, not a traced value.
    """

    market: MarketData
    action_levels: jax.Array  # [num_actions] money; unused in bracket mode
    leverage: jax.Array
    transaction_fee: jax.Array
    slippage: jax.Array
    maintenance_margin_rate: jax.Array
    bankrupt_threshold: jax.Array
    cash: jax.Array  # money, the fixed initial cash (the low end of a range)
    cash_lo: jax.Array  # int32
    cash_hi: jax.Array  # int32; a range is drawn iff cash_hi > cash_lo
    max_traj_length: jax.Array  # int32, 0 means none
    # bracket mode (docs/semantics.md §4); [num_actions] tables built from the action map
    bracket_side: jax.Array  # int32 BracketSide
    bracket_sl: jax.Array  # money, stop offset as stored in the action map (long < 0, short > 0)
    bracket_tp: jax.Array  # money, target offset (long > 0, short < 0)
    position_fraction: jax.Array
    quantity_per_trade: jax.Array
    lock_position: jax.Array  # bool
    layout: ParamsLayout = struct.field(pytree_node=False)
