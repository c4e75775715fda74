"""No silent garbage (docs/semantics.md §1.1, §2.1, §3.3, §10), each rule with its exact message:

* prices and cash outside the money dtype's safe range (float32 prices near 1e37 or 1e-44 used to overflow to
  inf and NaN rewards; `initial_cash=1e40` was accepted);
* strict types (`window_sizes=2.7` used to become 2, `True` 1; `random_start='no'` and `sltp='yes'` were
  truthy; `"0.5"` was a level);
* params built for another layout (window 8 params on a window 4 env used to run silently);
* out-of-range action indices (100 -> last, -1 -> last, -100 -> first before; now clipped: -1 and -100 -> 0);
* files that cannot be read (tracebacks from pandas without the file name before).
"""

from __future__ import annotations

import gzip
import re
import warnings

import jax
import numpy as np
import pytest

import trading_jax as tj
from tests.support.env_testlib import account, kinds, make, minute_frame, run_script

MARKET = dict(time_frames="1Min", execute_on="1Min", window_sizes=2, random_start=False)
F32_FIX = (
    'use float64 money: jax.config.update("jax_enable_x64", True) before building the env, or rescale the prices '
    "or the cash (e.g. quote them in another unit)."
)


def scaled(scale: float):
    frame = minute_frame([100, 101, 102, 103, 104])
    for col in ("open", "high", "low", "close"):
        frame[col] = frame[col] * scale
    return frame


def build(frame, **config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the spot warning of the layout test's default levels
        return tj.make(frame, tj.EnvConfig(**{**MARKET, **config}))


# ---------------------------------------------------------------------------------------------- money range
def test_prices_outside_float32_are_refused():
    with pytest.raises(ValueError) as err:
        build(scaled(1e37))
    assert str(err.value) == (
        "prices range from 9.95e+38 to 1.04e+39, outside float32's normal range [1.18e-38, 3.4e+38]: bars are "
        "stored as float32 (docs/semantics.md §1.5). Rescale the prices (e.g. quote them in another unit)."
    )
    with pytest.raises(ValueError, match=r"^prices range from 9\.95e-43 to 1\.04e-42, outside float32's normal"):
        build(scaled(1e-44))


LEVELS = dict(action_levels=(0, 1))  # spot, no shorts: no spot warning to silence


@pytest.mark.parametrize(
    "frame,config,what",
    [
        (scaled(1e29), LEVELS, "the highest price 1.04e+31"),
        (scaled(1e-33), dict(LEVELS, initial_cash=1e-4), "the lowest price 9.95e-32"),
        (scaled(1.0), dict(LEVELS, initial_cash=1e40), "initial_cash 1e+40"),
        (scaled(1.0), dict(LEVELS, initial_cash=1e-31), "initial_cash 1e-31"),
        (minute_frame([1.0, 1e8]), dict(LEVELS, initial_cash=1e21, leverage=100),
         "the largest position value (initial_cash x leverage x highest / lowest price) 2e+31"),
        (scaled(1e-31), LEVELS, "the largest position size (initial_cash x leverage / lowest price) 1.01e+33"),
        (scaled(1e24), dict(LEVELS, initial_cash=1e-6),
         "the smallest position size (initial_cash / highest price) 9.57e-33"),
    ],
)  # fmt: skip
def test_money_outside_the_float32_range_is_refused(frame, config, what):
    with pytest.raises(ValueError) as err:
        build(frame, **config)
    assert str(err.value) == (
        f"{what} is outside the safe range [2.9e-31, 3.4e+30] of float32 money: the step would overflow or lose "
        f"every digit (docs/semantics.md §10). Fix: {F32_FIX}"
    )


def test_float64_money_accepts_what_float32_cannot():
    with jax.enable_x64(True):
        env, params = build(scaled(1.0), initial_cash=1e40, action_levels=(0, 1))
        assert params.cash.dtype == np.float64 and float(params.cash) == 1e40
        with pytest.raises(ValueError) as err:
            build(scaled(1.0), initial_cash=1e301, action_levels=(0, 1))
    assert str(err.value).startswith("initial_cash 1e+301 is outside the safe range [5.6e-301, 1.8e+300] of float64")
    assert str(err.value).endswith("Fix: rescale the prices or the cash (e.g. quote them in another unit).")


# ---------------------------------------------------------------------------------------------- strict types
@pytest.mark.parametrize(
    "field,value,message",
    [
        ("window_sizes", 2.7, "window_sizes must hold ints >= 1: the window for timeframe 1Min is 2.7."),
        ("window_sizes", True, "window_sizes must hold ints >= 1: the window for timeframe 1Min is True."),
        ("window_sizes", "3", "window_sizes must hold ints >= 1: the window for timeframe 1Min is '3'."),
        ("random_start", "no", "random_start must be True or False, got 'no'"),
        ("sltp", "yes", "sltp must be True or False, got 'yes'"),
        ("include_hold_action", 1, "include_hold_action must be True or False, got 1"),
        ("max_traj_length", True, "max_traj_length must be a positive int or None, got True"),
        ("action_levels", (True, 0), "action_levels: cannot read (True, 0) as a list of numbers: True is not a real "
                                     "number (strings and booleans are not accepted)"),
        ("action_levels", ("0.5", 1), "action_levels: cannot read ('0.5', 1) as a list of numbers: '0.5' is not a "
                                      "real number (strings and booleans are not accepted)"),
        ("takeprofit_levels", (0.1, "x"), "takeprofit_levels: cannot read (0.1, 'x') as a list of numbers: 'x' is "
                                          "not a real number (strings and booleans are not accepted)"),
    ],
)  # fmt: skip
def test_strict_types(field, value, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        tj.EnvConfig(**{**MARKET, field: value})


def test_accepted_spellings_are_normalised():
    c = tj.EnvConfig(**{**MARKET, "window_sizes": 3.0, "random_start": np.bool_(True), "action_levels": np.arange(2)})
    assert c.window_sizes == (3,) and c.random_start is True and c.action_levels == (0.0, 1.0)


# ---------------------------------------------------------------------------------------------- params layout
def test_params_for_another_layout_are_refused():
    frame = minute_frame(list(range(100, 130)))
    env4, params4 = build(frame, window_sizes=4)
    _, params8 = build(frame, window_sizes=8)
    _, params_sltp = build(frame, window_sizes=4, sltp=True, leverage=2)
    assert params4.layout == tj.env.ParamsLayout((4,), (5,), False)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError) as err:
        jax.jit(env4.reset)(key, params8)
    assert str(err.value) == (
        "params were built for window_sizes=(8,), feature_sizes=(5,), sltp=False, but this env was built for "
        "window_sizes=(4,), feature_sizes=(5,), sltp=False: use this env's own params (env.default_params, or the "
        "pair that trading_jax.make returns)"
    )
    _, state = env4.reset(key, params4)
    sltp_layout = r"^params were built for window_sizes=\(4,\), feature_sizes=\(5,\), sltp=True,"
    with pytest.raises(ValueError, match=sltp_layout):
        jax.jit(env4.step)(key, state, 0, params_sltp)


# ---------------------------------------------------------------------------------------------- action indices
def test_out_of_range_actions_are_clipped():
    """One rule: indices are clipped to [0, num_actions - 1] (-1 and -100 act as 0, 100 as the last)."""
    closes = [100, 102, 104, 103, 101, 99, 100, 102, 103]
    env, params = make(minute_frame(closes), leverage=3, transaction_fee=0.001, action_levels=(-1, -0.5, 0, 0.5, 1))
    wild = [4, -1, 4, 100, 2, -100, 3, 100]
    _, got = run_script(env, params, wild)
    _, want = run_script(env, params, [min(max(a, 0), 4) for a in wild])
    assert kinds(got) == kinds(want) == ["long", "short", "long", "hold", "flat", "short", "long", "hold"]
    for field in ("balance", "position", "reward"):
        np.testing.assert_array_equal(got[field], want[field], err_msg=field)
    np.testing.assert_array_equal(account(got), account(want))


# ---------------------------------------------------------------------------------------------- files
def test_unreadable_files_are_named(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip at all")
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"timestamp,open\n" * 50)[:30])
    (tmp_path / "binary.csv").write_bytes(bytes(range(128, 256)) * 4)
    (tmp_path / "header.csv").write_text("timestamp,open,high,low,close,volume\n")
    cases = [
        ("missing.csv", FileNotFoundError, "OHLCV file not found: '{d}/missing.csv'"),
        ("dir.csv", ValueError, "OHLCV path '{d}/dir.csv' is a directory; give a .csv, .csv.gz or .parquet file."),
        ("empty.csv", ValueError, "OHLCV file '{d}/empty.csv' is empty: it has no header and no rows."),
        ("bad.csv.gz", ValueError, "cannot read OHLCV file '{d}/bad.csv.gz' as CSV (gzip) (BadGzipFile: Not a "
                                   "gzipped file (b'no'))."),
        ("cut.csv.gz", ValueError, "cannot read OHLCV file '{d}/cut.csv.gz' as CSV (gzip) (EOFError: Compressed "
                                   "file ended before the end-of-stream marker was reached)."),
        ("binary.csv", ValueError, "cannot read OHLCV file '{d}/binary.csv' as CSV (UnicodeDecodeError: 'utf-8' "
                                   "codec can't decode byte 0x80 in position 0: invalid start byte)."),
        ("header.csv", ValueError, "{d}/header.csv: OHLCV data has no rows; provide at least one bar."),
    ]  # fmt: skip
    for name, kind, message in cases:
        with pytest.raises(kind) as err:
            tj.load_ohlcv(tmp_path / name)
        assert type(err.value) is kind and str(err.value) == message.format(d=tmp_path), name
