"""TorchTrade configs as `EnvConfig` keyword arguments (`EnvConfig.from_torchtrade`).

TorchTrade 0.1.0's offline configs (`SequentialTradingEnvConfig`, its SLTP subclass, and the vectorized twins)
share most field names with `EnvConfig`; docs/semantics.md §2.1 and §4 list them. What differs:

* `margin_mode` is TorchTrade's `MarginMode` enum (`margin_type` is accepted as another name for it);
* the SLTP class has no switch: its class, or any SLTP-only field, means `sltp=True`;
* `time_frames` / `execute_on` may be TorchTrade `TimeFrame` objects (read through `obs_key_freq()`);
* `symbol`, `seed` and `num_envs` have no meaning in `EnvConfig`: each is dropped with a `UserWarning`.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Mapping

SAME = (
    "time_frames", "window_sizes", "execute_on", "initial_cash", "transaction_fee", "slippage",
    "bankrupt_threshold", "max_traj_length", "random_start", "action_levels", "leverage",
    "maintenance_margin_rate", "include_base_features",
)
SLTP_ONLY = (
    "stoploss_levels", "takeprofit_levels", "include_hold_action", "include_close_action",
    "lock_position_until_sltp", "trade_mode", "position_fraction", "quantity_per_trade",
)
MARGIN = ("margin_mode", "margin_type")
DROPPED = {
    "symbol": "it has no meaning in trading_jax's env, which trades whatever prices it is given; name the "
    "quote currency in plots instead (render_history(..., quote_currency='USD'))",
    "seed": "every random draw takes an explicit key: use jax.random.PRNGKey({value!r}) for reset / rollout, "
    "or reset(seed={value!r}) on trading_jax.gym.GymnasiumEnv",
    "num_envs": "vmap reset/step over that many keys (tj.rollout(..., num_envs={value!r})), or set the "
    "trainer's env.num_envs",
}
KNOWN = SAME + SLTP_ONLY + MARGIN + tuple(DROPPED)


def _fields(config) -> tuple[dict, bool]:
    """The config's fields as a dict, and whether it is an SLTP class."""
    if isinstance(config, Mapping):
        return dict(config), False
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        return fields, "SLTP" in type(config).__name__
    raise ValueError(
        "EnvConfig.from_torchtrade takes a TorchTrade config dataclass (SequentialTradingEnvConfig, "
        f"SequentialTradingEnvSLTPConfig) or a dict of its fields, got {type(config).__name__}"
    )


def _timeframe(value):
    """A TorchTrade `TimeFrame` as its key string ("5Minute"); strings pass through."""
    if hasattr(value, "obs_key_freq"):
        return value.obs_key_freq()
    if isinstance(value, (list, tuple)):
        return tuple(_timeframe(v) for v in value)
    return value


def _margin_mode(value):
    """TorchTrade's `MarginMode.ISOLATED` (or its name or value, any case) -> "isolated"."""
    value = getattr(value, "value", value)
    return value.lower() if isinstance(value, str) else value


def envconfig_kwargs(config) -> dict:
    """`EnvConfig` keyword arguments for a TorchTrade config (module docstring); warns for dropped fields."""
    fields, sltp_class = _fields(config)
    unknown = [k for k in fields if k not in KNOWN]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), KNOWN, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(f"unknown TorchTrade config key {key!r}{hint} Known keys: {sorted(KNOWN)}")
    margin = [k for k in MARGIN if k in fields]
    if len(margin) > 1:
        raise ValueError("give margin_mode or margin_type, not both: they name the same setting")
    out = {k: fields[k] for k in SAME + SLTP_ONLY if k in fields}
    for key in ("time_frames", "execute_on"):
        if key in out:
            out[key] = _timeframe(out[key])
    if margin:
        out["margin_mode"] = _margin_mode(fields[margin[0]])
    if sltp_class or any(k in fields for k in SLTP_ONLY):
        out["sltp"] = True
    for key, why in DROPPED.items():
        if key in fields:
            value = fields[key]
            warnings.warn(
                f"TorchTrade config field {key}={value!r} is dropped: {why.format(value=value)}",
                UserWarning,
                stacklevel=3,
            )
    return out
