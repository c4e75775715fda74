"""JAX's persistent compilation cache, on by default for the trainer, `train.evaluate` and the benchmarks.

A run, a resume or an evaluation of the same shapes then loads its XLA programs from disk instead of compiling
them again. Where the cache lives, first match wins:

1. `TRADING_JAX_COMPILATION_CACHE`: `off` (or `0`, `false`, `none`) turns it off; any other value is the folder;
2. the config key `compilation_cache` (`auto`, `off`, or a folder), for the trainer and `train.evaluate`;
3. JAX's own `JAX_COMPILATION_CACHE_DIR`, if the user set it;
4. `auto`: `$XDG_CACHE_HOME/trading_jax/jax` (default `~/.cache/trading_jax/jax`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import jax

ENV_VAR = "TRADING_JAX_COMPILATION_CACHE"
OFF = ("off", "0", "false", "none", "no")


def default_dir() -> Path:
    """`$XDG_CACHE_HOME/trading_jax/jax`, or `~/.cache/trading_jax/jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trading_jax" / "jax"


def resolve(setting: str | None = "auto") -> Path | None:
    """The cache folder that `setting` (a config value) and the environment ask for, or None for off."""
    choice = os.environ.get(ENV_VAR) or (str(setting) if setting is not None else "auto")
    if choice.strip().lower() in OFF:
        return None
    if choice.strip().lower() != "auto":
        return Path(choice).expanduser().resolve()
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).expanduser().resolve()
    return default_dir()


def enable(setting: str | None = "auto") -> Path | None:
    """Point JAX's persistent cache at `resolve(setting)` and cache every program (also the fast ones: the
    trainer's evaluation programs compile in under JAX's default 1 s threshold). Returns the folder, or None
    when off. A folder that cannot be created leaves the cache off with a warning, never fails the run."""
    folder = resolve(setting)
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        warnings.warn(f"compilation cache off: cannot create {folder} ({err.strerror}); set {ENV_VAR}=off "
                      f"or to a writable folder", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
