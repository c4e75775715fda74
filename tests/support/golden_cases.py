"""Tiny shared loader for the golden traces in ``tests/golden/`` (no JAX, no torch).

Each case is ``<case>.json.gz`` (config, reset and per-step records) plus ``<case>.csv.gz`` (the 1-minute
input frame). See ``tests/golden/README.md`` for the format.
"""

from __future__ import annotations

import gzip
import json
from functools import cache

import pandas as pd

from tests.support.paths import REPO_ROOT

GOLDEN = REPO_ROOT / "tests" / "golden"
CASES: tuple[str, ...] = tuple(sorted(p.name[: -len(".json.gz")] for p in GOLDEN.glob("*.json.gz")))


@cache
def load_json(case: str) -> dict:
    """The recorded trace of ``case`` (do not mutate: it is cached)."""
    with gzip.open(GOLDEN / f"{case}.json.gz", "rt") as fh:
        return json.load(fh)


def load_csv(case: str) -> pd.DataFrame:
    """The raw input frame of ``case`` as written (``timestamp`` column as strings, empty fields -> NaN)."""
    return pd.read_csv(GOLDEN / f"{case}.csv.gz")


def is_sltp(case: str) -> bool:
    """True for the bracket engine (``SequentialTradingEnvSLTP``) cases."""
    return "SLTP" in load_json(case)["engine"]


SLTP_CASES: tuple[str, ...] = tuple(c for c in CASES if is_sltp(c))
PLAIN_CASES: tuple[str, ...] = tuple(c for c in CASES if not is_sltp(c))
