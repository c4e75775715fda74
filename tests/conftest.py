"""Fixtures shared by several test packages.

Compiled env programs are shared through `tests.support.env_testlib`: `run_script`, `runner` and
`keyed_step` keep one jitted program per static env signature for the whole session, so every module
that runs an env of the same signature reuses one compile. Trainer tests share theirs inside a
module-scoped fixture (`tests/train/test_ppo.py: tiny`).
"""

import atexit
import os
import shutil
import tempfile

import jax
import pytest

# The subprocesses of a session (`python -m train.ppo`, the README's commands) share one persistent compilation
# cache (train/compile_cache.py), so a program that several of them compile is compiled once; the user's own
# cache folder is left alone.
if "TRADING_JAX_COMPILATION_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="trading-jax-test-cache-")
    os.environ["TRADING_JAX_COMPILATION_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


@pytest.fixture
def x64():
    """Run the test with float64 money (`jax.enable_x64`); use as `pytestmark = pytest.mark.usefixtures("x64")`."""
    with jax.enable_x64(True):
        yield
