"""A run directory belongs to one run: where it is, who holds it, and the config stored in it.

* `logger.run_dir` is made absolute at the start. A fresh run refuses an existing non-empty directory (the
  message names `checkpoint.resume=DIR` and a new directory); `checkpoint.resume=DIR` always continues in
  DIR, whatever the config stored in DIR says (a path is never taken from a file's contents).
* `RunDirLock`: `fcntl.flock` on `RUN_DIR/.lock`, held for the whole run. A second live run on the same
  directory is refused; the kernel drops the lock when its process dies, so a crashed run never blocks a
  resume (the `.lock` file itself stays, empty of meaning).
* `stored_config`: a config read back from a run (a checkpoint's) is never resolved. An interpolation
  (`${oc.env:SECRET}`, `${...}`) in it is refused with a message naming the key, unless the command line
  sets that key; so a run directory someone sends you cannot read your environment into its files.
"""

from __future__ import annotations

import copy
import fcntl
import glob
import json
import os
import time

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from train.config import ConfigError, default_config
from train.log_backends import atomic_write

LOCK_FILE = ".lock"
CKPT_DIR = "checkpoints"  # RUN_DIR/checkpoints/ckpt_NNNNNNNN/ (train/checkpoint.py)


# --------------------------------------------------------------------------------------- where
def new_run_dir(cfg) -> str:
    """`<root_dir>/<exp_name>-<time>[-n]`, absolute, not existing yet."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.abspath(os.path.join(str(cfg.logger.root_dir), f"{cfg.logger.exp_name}-{stamp}"))
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def resume_dir(path: str, what: str = "checkpoint.resume") -> str:
    """The run directory of `checkpoint.resume=PATH` (`what` names the argument in errors): PATH itself, or
    the run above PATH when PATH is its `checkpoints/` folder or one checkpoint in it. From the path alone."""
    path = os.path.abspath(str(path))
    if not os.path.exists(path):
        raise ConfigError(f"{what}={path}: no such run directory")
    if not os.path.isdir(path):
        raise ConfigError(f"{what}={path}: a file, not a run directory (expected RUN_DIR/{CKPT_DIR}/)")
    if os.path.basename(os.path.dirname(path)) == CKPT_DIR:
        return os.path.dirname(os.path.dirname(path))
    if os.path.basename(path) == CKPT_DIR:
        return os.path.dirname(path)
    return path


def run_dir_of(cfg) -> str:
    """The absolute directory this run writes into (see module doc)."""
    if cfg.checkpoint.resume:
        run_dir = resume_dir(cfg.checkpoint.resume)
        given = cfg.logger.run_dir
        if given and os.path.abspath(str(given)) != run_dir:
            raise ConfigError(
                f"checkpoint.resume={cfg.checkpoint.resume} continues in {run_dir}, but logger.run_dir={given}: "
                f"a resumed run writes into its own directory; to continue elsewhere, copy it first "
                f"(cp -r {run_dir} NEW_DIR) and resume NEW_DIR"
            )
        return run_dir
    if cfg.logger.run_dir:
        return os.path.abspath(str(cfg.logger.run_dir))
    return new_run_dir(cfg)


def _entries(run_dir: str) -> list[str]:
    return sorted(e for e in os.listdir(run_dir) if e != LOCK_FILE) if os.path.isdir(run_dir) else []


def check_run_dir(run_dir: str, resume: bool) -> None:
    """Before anything is loaded or written: a fresh run needs an empty (or new) directory whose nearest
    existing parent is a writable directory; no live run may hold it."""
    parent = run_dir
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"logger.run_dir={run_dir}: cannot create it, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"logger.run_dir={run_dir}: {parent} is not writable; choose another logger.run_dir")
    if not resume and _entries(run_dir):
        _refuse_reuse(run_dir)
    if os.path.isfile(os.path.join(run_dir, LOCK_FILE)):
        RunDirLock(run_dir, probe=True).release()  # raises if a live run holds it


def _refuse_reuse(run_dir: str):
    shown = ", ".join(_entries(run_dir)[:4])
    raise ConfigError(
        f"logger.run_dir={run_dir} already holds a run ({shown}); continue it with checkpoint.resume={run_dir}, "
        "or start a new run in a new logger.run_dir"
    )


class RunDirLock:
    """An exclusive `flock` on `RUN_DIR/.lock` (created, with the directory, if missing), or ConfigError."""

    def __init__(self, run_dir: str, probe: bool = False):
        self.path = os.path.join(run_dir, LOCK_FILE)
        try:
            os.makedirs(run_dir, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"logger.run_dir={run_dir}: cannot write there ({err.strerror})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise ConfigError(
                f"logger.run_dir={run_dir} is in use by a live run (pid {holder}); wait for it to finish, "
                "or use another logger.run_dir"
            ) from None
        if not probe:  # the holder's pid, for the message a second run gets
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def claim_run_dir(run_dir: str, resume: bool) -> RunDirLock:
    """Lock the directory for this run; a fresh run checks again, under the lock, that it is empty. A resume
    removes the temporary files a killed run left (`.tmp-*` of atomic writes, `*.tmp.png` plots)."""
    lock = RunDirLock(run_dir)
    if not resume and _entries(run_dir):
        lock.release()
        _refuse_reuse(run_dir)
    for pattern in (".tmp-*", os.path.join("plots", "*.tmp.png")):
        for path in glob.glob(os.path.join(glob.escape(run_dir), pattern)):
            os.remove(path)
    return lock


def pin_paths(cfg, run_dir: str):
    """A copy of `cfg` with the paths it was started with made absolute (a resume from another folder then
    finds the same data), and `logger.run_dir` the directory this run writes into."""
    cfg = copy.deepcopy(cfg)
    cfg.logger.run_dir = run_dir
    if cfg.env.data_path:
        cfg.env.data_path = os.path.abspath(str(cfg.env.data_path))
    if cfg.checkpoint.resume:
        cfg.checkpoint.resume = os.path.abspath(str(cfg.checkpoint.resume))
    return cfg


CUSTOM_FILE = "custom.json"  # the Python-side features and reward of a run (`train.data.Setup.custom`)


def write_run_files(run_dir: str, config_yaml: str, features, custom: dict | None = None) -> None:
    """`config.yaml` (a readable copy; a resume reads the checkpoint's own), `features.json` and, for a run
    built from Python with its own features or reward, `custom.json`; atomically."""
    from train.data import features_to_json  # trading_jax and jax: not needed by the CLI's first lines

    atomic_write(os.path.join(run_dir, "config.yaml"), config_yaml)
    atomic_write(os.path.join(run_dir, "features.json"), json.dumps(features_to_json(features), indent=1))
    if custom:
        atomic_write(os.path.join(run_dir, CUSTOM_FILE), json.dumps(custom, indent=1))


# --------------------------------------------------------------------------------------- stored config
def _interpolations(node, prefix: str = "") -> list[tuple[str, str]]:
    """`(key, text)` of every string holding `${` in a plain container (lists report their own key)."""
    if isinstance(node, dict):
        return [hit for k, v in node.items() for hit in _interpolations(v, f"{prefix}{k}.")]
    if isinstance(node, list):
        return [(prefix[:-1], text) for v in node for _, text in _interpolations(v, prefix)]
    return [(prefix[:-1], node)] if isinstance(node, str) and "${" in node else []


def _drop(container: dict, key: str) -> None:
    *groups, last = key.split(".")
    for g in groups:
        container = container.get(g, {})
    container.pop(last, None)


def stored_config(text: str, source: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The trainer config stored in a run (YAML text), on the defaults, with nothing resolved.

    An interpolation is refused (ConfigError naming the key) unless `overrides` (`key=value` items) set that
    key, in which case the stored value is dropped and the override applies later."""
    try:
        raw = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    except (OmegaConfBaseException, ValueError) as err:
        raise ConfigError(f"{source}: the stored config is not readable YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the stored config is not a mapping of config groups")
    given = {item.split("=", 1)[0].lstrip("+") for item in overrides if "=" in item}
    for key, value in _interpolations(raw):
        if key not in given:
            raise ConfigError(
                f"{source}: {key}={value!r} is an interpolation; a stored config is never resolved (it could read "
                f"your environment): give {key}=VALUE on the command line"
            )
        _drop(raw, key)
    try:
        return OmegaConf.merge(default_config(), OmegaConf.create(raw))
    except OmegaConfBaseException as err:
        where = getattr(err, "full_key", "") or "?"
        raise ConfigError(f"{source}: stored config key {where}: {str(err).splitlines()[0]}") from None
