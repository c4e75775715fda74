"""Fixtures shared by several test packages.

Compiled env programs are shared through `tests.support.env_testlib`: `run_script`, `runner` and
`keyed_step` keep one jitted program per static env signature for the whole session, so every module
that runs an env of the same signature reuses one compile. Trainer tests share theirs inside a
module-scoped fixture (`tests/train/test_ppo.py: tiny`).
"""

import jax
import pytest


@pytest.fixture
def x64():
    """Run the test with float64 money (`jax.enable_x64`); use as `pytestmark = pytest.mark.usefixtures("x64")`."""
    with jax.enable_x64(True):
        yield
