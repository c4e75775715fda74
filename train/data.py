"""Data for training: load, split at `env.test_split_start`, build features and the three envs (docs/semantics.md §6.2).

* train env: the training span (`timestamp < test_split_start`), `random_start`, `max_traj_length`
  (default `frames_per_batch // num_envs`, as the reference), vmapped over `num_envs` lanes.
* test env: the test span (`timestamp >= test_split_start`), `random_start=False`, no length limit: one
  deterministic episode from the first bar of the test split to its end.
* train-eval env: the training span, `random_start=False`, at most `eval.train_max_steps` steps (Q9).

Features (`env.features`): "zscore_train" fits frozen z-score statistics on the training span only
(`trading_jax.features.fit_zscore`) and applies them to every split and to `train.evaluate` on new data;
"zscore_split" is the reference's per-split fit (Q8); "none" feeds raw prices.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import trading_jax
from trading_jax.datasets import btcusdt_1m_sample
from trading_jax.features import ZScore, fit_zscore, zscore_ohlcv
from train.config import env_config_kwargs


@dataclass
class EnvBundle:
    env: Any  # trading_jax.TradingEnv (static part)
    params: Any  # trading_jax.EnvParams (device pytree)
    market: Any  # trading_jax.Market
    num_steps: int  # steps of one full deterministic episode (eval envs); 0 for the train env
    cache: dict = field(default_factory=dict)  # compiled episode functions, per network (train.evaluate)


@dataclass
class Setup:
    train: EnvBundle
    test: EnvBundle | None  # None when there is no test split
    train_eval: EnvBundle
    features: tuple | None  # frozen ZScore per timeframe ("zscore_train"), else None
    env_config: Any  # trading_jax.EnvConfig of the training env
    data: dict = field(default_factory=dict)  # data_fingerprint of the whole frame (stored with each checkpoint)
    # Python-side replacements of the config (`build_setup(features=, reward_fn=)`): `{"features": [name or
    # None per function], "reward_fn": name or None}`, each name "module:qualname" (`importable_name`).
    custom: dict = field(default_factory=dict)

    @property
    def obs_dim(self) -> int:
        return int(self.train.env.observation_shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.train.env.num_actions)


def importable_name(fn) -> str | None:
    """`"module:qualname"` that imports `fn` back in another process, or None (a lambda, a nested function,
    a partial or any object without a top-level name, or a function of `__main__`)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def import_name(name: str):
    """The object of an `importable_name`."""
    module, _, qualname = name.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def custom_record(features, reward_fn) -> dict:
    """What `Setup.custom` records of `build_setup`'s Python-side features and reward."""
    out = {}
    if features is not None:
        fns = features if isinstance(features, list | tuple) else [features]
        out["features"] = [importable_name(f) for f in fns]
        out["features_repr"] = [repr(f) for f in fns]
        out["features_per_timeframe"] = isinstance(features, list | tuple)
    if reward_fn is not None:
        out["reward_fn"] = importable_name(reward_fn)
    return out


def load_frame(cfg, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The OHLCV frame: `frame` if given, else `env.data_path`, else the bundled BTC 1-minute sample."""
    if frame is not None:
        return trading_jax.load_ohlcv(frame)
    if cfg.env.data_path:
        try:
            return trading_jax.load_ohlcv(cfg.env.data_path)
        except (OSError, EOFError, ValueError) as err:
            raise ValueError(f"env.data_path={cfg.env.data_path}: {str(err).splitlines()[0]}") from None
    return btcusdt_1m_sample()


def data_fingerprint(frame: pd.DataFrame) -> dict:
    """`{"sha256", "rows", "start", "end"}` of an OHLCV frame (its values and timestamps, not its file)."""
    rows = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    h = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    h.update(np.ascontiguousarray(rows).tobytes())
    return {
        "sha256": h.hexdigest(),
        "rows": len(frame),
        "start": str(frame.index[0]) if len(frame) else None,
        "end": str(frame.index[-1]) if len(frame) else None,
    }


def describe_data_change(saved: dict | None, current: dict) -> str | None:
    """A sentence when `current` is other data than the run's `saved` fingerprint, else None."""
    if not saved or saved.get("sha256") == current["sha256"]:
        return None
    what = lambda d: f"{d.get('rows')} rows {d.get('start')} .. {d.get('end')}, sha256 {str(d.get('sha256'))[:12]}"
    return f"this data ({what(current)}) is not the run's ({what(saved)})"


def split_frame(frame: pd.DataFrame, test_split_start) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """`(train, test)`: rows before `test_split_start`, and rows at or after it (None: no split)."""
    if test_split_start is None:
        return frame, None
    start = pd.Timestamp(test_split_start)
    if start.tzinfo is not None:
        start = start.tz_convert("UTC").tz_localize(None)
    train, test = frame[frame.index < start], frame[frame.index >= start]
    if len(train) == 0 or len(test) == 0:
        raise ValueError(
            f"env.test_split_start={test_split_start} leaves {len(train)} training and {len(test)} test rows "
            f"(data spans {frame.index[0]} .. {frame.index[-1]}); pick a timestamp inside the data, or "
            "env.test_split_start=null for no test split"
        )
    return train, test


def features_to_json(features) -> list | None:
    if features is None:
        return None
    return [
        {
            "columns": list(z.columns),
            "mean": list(z.mean),
            "scale": list(z.scale),
            "timeframe": z.timeframe,
            "fit_end": None if z.fit_end is None else str(z.fit_end),
            "num_bars": z.num_bars,
        }
        for z in features
    ]


def features_from_json(data) -> tuple | None:
    if data is None:
        return None
    return tuple(
        ZScore(
            columns=tuple(d["columns"]),
            mean=tuple(d["mean"]),
            scale=tuple(d["scale"]),
            timeframe=d.get("timeframe"),
            fit_end=None if d.get("fit_end") is None else pd.Timestamp(d["fit_end"]),
            num_bars=int(d.get("num_bars", 0)),
        )
        for d in data
    )


def save_features(path, features) -> None:
    with open(path, "w") as fh:
        json.dump(features_to_json(features), fh, indent=1)


def load_features(path) -> tuple | None:
    with open(path) as fh:
        return features_from_json(json.load(fh))


def feature_fns(cfg, fit_frame: pd.DataFrame, frozen=None):
    """`(features argument for build_market, frozen ZScore tuple or None)`."""
    mode = cfg.env.features
    if mode == "none":
        return None, None
    if mode == "zscore_split":
        return zscore_ohlcv, None
    if frozen is None:
        frozen = fit_zscore(fit_frame, list(cfg.env.time_frames), cfg.env.execute_on)
    return tuple(frozen), tuple(frozen)


def _build(frame, cfg, features, env_config, episode: bool, what: str, reward_fn=None) -> EnvBundle:
    e = cfg.env
    try:
        market = trading_jax.build_market(frame, list(e.time_frames), list(e.window_sizes), e.execute_on, features)
    except ValueError as err:
        raise ValueError(f"{what} split: {err}") from None
    env, params = trading_jax.make(market, env_config, reward_fn=reward_fn)
    T = int(market.num_bars)
    length = T if env_config.max_traj_length is None else min(env_config.max_traj_length, T)
    steps = max(length - 1, 0) if episode else 0
    return EnvBundle(env, params, market, steps)


def eval_env_config(env_config, max_traj_length: int | None):
    """Deterministic-episode config: first bar, fixed cash (the low end of a range, as the reference)."""
    lo, _ = env_config.cash_range
    return env_config.replace(random_start=False, max_traj_length=max_traj_length, initial_cash=lo)


def build_setup(cfg, frame: pd.DataFrame | None = None, frozen_features=None, *, features=None,
                reward_fn=None) -> Setup:
    """Load, split and build the train, test and train-eval envs of a trainer config.

    `features` (a feature function, or one per timeframe, as `trading_jax.build_market` takes) replaces
    `env.features`; `reward_fn` (`fn(old_pv, new_pv[, state])`) is the training env's reward. The
    evaluation envs keep the log-return reward, so `eval/reward` stays comparable across rewards.
    """
    kwargs = env_config_kwargs(cfg)
    try:
        env_config = trading_jax.EnvConfig(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"env.*: {err}") from None
    full = load_frame(cfg, frame)
    train_df, test_df = split_frame(full, cfg.env.test_split_start)
    custom = custom_record(features, reward_fn)
    if features is None:
        features, frozen = feature_fns(cfg, train_df, frozen_features)
    else:
        frozen = None
    train = _build(train_df, cfg, features, env_config, False, "training", reward_fn)
    max_steps = int(cfg.eval.train_max_steps)
    train_eval_env, train_eval_params = trading_jax.make(train.market, eval_env_config(env_config, max_steps + 1))
    train_eval = EnvBundle(train_eval_env, train_eval_params, train.market, min(max_steps, train.market.num_bars - 1))
    test = None
    if test_df is not None:
        test = _build(test_df, cfg, features, eval_env_config(env_config, None), True, "test")
        if test.num_steps < 1:
            raise ValueError(
                f"the test split (from env.test_split_start={cfg.env.test_split_start}) has "
                f"{test.market.num_bars} execution bar(s) after the observation windows: move "
                "env.test_split_start earlier"
            )
    data = data_fingerprint(full)
    return Setup(train, test, train_eval, features=frozen, env_config=env_config, data=data, custom=custom)


def build_eval_bundle(cfg, frame: pd.DataFrame, frozen_features=None, *, features=None) -> EnvBundle:
    """One deterministic episode over the whole of `frame` (for `train.evaluate ... data=PATH`); `features`
    replaces `env.features` as in `build_setup`."""
    env_config = trading_jax.EnvConfig(**env_config_kwargs(cfg))
    if features is None:
        if cfg.env.features == "zscore_train" and frozen_features is None:
            raise ValueError("env.features=zscore_train needs the training statistics (features.json of the run)")
        features, _ = feature_fns(cfg, frame, frozen_features)
    return _build(frame, cfg, features, eval_env_config(env_config, None), True, "evaluation")
