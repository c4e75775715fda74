"""Timeframe parsing, keys, frequencies, ordering and config normalisation (docs/semantics.md §1.2)."""

from __future__ import annotations

import pickle
import warnings

import pandas as pd
import pytest

from trading_jax.timeframes import Timeframe, normalize_timeframes, parse_timeframe


@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("5Min", 5, "Minute"),
        ("5min", 5, "Minute"),
        ("5Minute", 5, "Minute"),
        ("15 minutes", 15, "Minute"),
        ("10m", 10, "Minute"),
        ("10M", 10, "Minute"),
        (" 3 MIN ", 3, "Minute"),
        ("1Hour", 1, "Hour"),
        ("1H", 1, "Hour"),
        ("2hr", 2, "Hour"),
        ("4 hours", 4, "Hour"),
        ("1D", 1, "Day"),
        ("1day", 1, "Day"),
        ("3 Days", 3, "Day"),
    ],
)
def test_parse_spellings(text, value, unit):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these is non-canonical
        tf = parse_timeframe(text)
    assert tf == Timeframe(value, unit)


def test_key_freq_duration():
    tf = parse_timeframe("15Min")
    assert (tf.key, tf.pandas_freq, tf.minutes) == ("15Minute", "15min", 15)
    assert tf.timedelta == pd.Timedelta(minutes=15)
    h = parse_timeframe("4h")
    assert (h.key, h.pandas_freq, h.minutes) == ("4Hour", "4h", 240)
    d = parse_timeframe("1D")
    assert (d.key, d.pandas_freq, d.minutes) == ("1Day", "1D", 1440)
    for t in (tf, h, d):  # the pandas frequency means the same duration
        assert pd.Timedelta(pd.tseries.frequencies.to_offset(t.pandas_freq)) == t.timedelta
    assert str(h) == "4Hour"


def test_timeframe_passthrough():
    tf = Timeframe(5, "Minute")
    assert parse_timeframe(tf) is tf


@pytest.mark.parametrize(
    "text, key, suggestion",
    [
        ("60min", "60Minute", "1Hour"),
        ("120Min", "120Minute", "2Hour"),
        ("1440min", "1440Minute", "1Day"),
        ("24h", "24Hour", "1Day"),
    ],
)
def test_non_canonical_warns_but_keeps_spelling(text, key, suggestion):
    with pytest.warns(UserWarning, match=f"observation key '{key}'.*'{suggestion}'"):
        tf = parse_timeframe(text)
    assert tf.key == key


def test_canonical_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_timeframe("1hour").key == "1Hour"
        assert parse_timeframe("90min").key == "90Minute"  # not a whole number of hours


def test_ordering_by_duration_equality_by_spelling():
    with pytest.warns(UserWarning):
        m60 = parse_timeframe("60min")
    h1 = parse_timeframe("1Hour")
    assert m60 != h1
    assert not (m60 < h1) and not (m60 > h1) and not (h1 < m60) and not (h1 > m60)
    assert m60 <= h1 and m60 >= h1
    assert parse_timeframe("5Min") < h1 < parse_timeframe("1D")
    assert sorted([parse_timeframe("1D"), parse_timeframe("1Min"), h1]) == [
        Timeframe(1, "Minute"),
        h1,
        Timeframe(1, "Day"),
    ]
    assert {parse_timeframe("5Min"), Timeframe(5, "Minute")} == {Timeframe(5, "Minute")}


def test_frozen_and_picklable():
    tf = parse_timeframe("5Min")
    with pytest.raises(AttributeError):
        tf.value = 3  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(tf)) == tf


@pytest.mark.parametrize(
    "bad, match",
    [
        ("5", "expected '<number><unit>'"),
        ("Min", "expected '<number><unit>'"),
        ("5.5Min", "expected '<number><unit>'"),
        ("-5Min", "expected '<number><unit>'"),
        ("5 weeks", "Unknown time unit 'weeks'.*min/minute"),
        ("3sec", "Unknown time unit 'sec'"),
        ("0Min", "must be >= 1"),
        (5, "must be a string like '5Min'"),
        (None, "must be a string like '5Min'"),
    ],
)
def test_parse_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        parse_timeframe(bad)


def test_direct_construction_validated():
    with pytest.raises(ValueError, match="Unknown Timeframe unit 'Week'"):
        Timeframe(1, "Week")
    with pytest.raises(ValueError, match="must be >= 1"):
        Timeframe(0, "Minute")
    with pytest.raises(ValueError, match="positive int"):
        Timeframe(1.5, "Minute")  # type: ignore[arg-type]


def test_normalize_timeframes():
    tfs, ws, e = normalize_timeframes("1Hour", 10, "1Hour")
    assert tfs == (Timeframe(1, "Hour"),) and ws == (10,) and e == Timeframe(1, "Hour")
    tfs, ws, e = normalize_timeframes(["1Min", "5Min"], 4, "1Min")
    assert [t.key for t in tfs] == ["1Minute", "5Minute"] and ws == (4, 4)
    tfs, ws, _ = normalize_timeframes(("1Min", Timeframe(15, "Minute")), [8, 2], "5Min")
    assert ws == (8, 2) and tfs[1].key == "15Minute"


@pytest.mark.parametrize(
    "args, match",
    [
        ((["1Min", "5Min"], [4], "1Min"), r"window_sizes has 1 entries but time_frames has 2"),
        ((["1Min"], 0, "1Min"), r"window size for timeframe 1Minute must be >= 1, got 0"),
        ((["1Min"], [-3], "1Min"), r"must be >= 1, got -3"),
        ((["1Min"], [2.5], "1Min"), r"window_sizes must hold ints >= 1: the window for timeframe 1Minute is 2.5\."),
        ((["1Min"], True, "1Min"), r"window_sizes must be an int >= 1"),
        (([], 3, "1Min"), r"time_frames is empty"),
        ((["1Min", "1min"], 3, "1Min"), r"lists 1Minute twice"),
        ((["1Min"], 3, "1Week"), r"Unknown time unit 'Week'"),
        ((["1Fortnight"], 3, "1Min"), r"Unknown time unit 'Fortnight'"),
    ],
)
def test_normalize_errors(args, match):
    with pytest.raises(ValueError, match=match):
        normalize_timeframes(*args)
