"""Run logging: `<run_dir>/metrics.jsonl` always, plus the backends that `logger.backend` names.

`metrics.jsonl` is the run's own record (read back by `read_metrics`, the tests and the notebooks) and is
written whatever the backend. `logger.backend` adds (one name or a list, e.g. `logger.backend=[tensorboard,csv]`):

* `wandb` (default): wandb in `logger.mode`, offline by default (files under `<run_dir>/wandb`, sync later
  with `wandb sync`); `logger.mode=online` streams, `logger.mode=disabled` turns it off;
* `tensorboard`: tensorboardX events (no TensorFlow) under `<run_dir>/tensorboard`
  (`tensorboard --logdir <run_dir>/tensorboard`);
* `csv`: `<run_dir>/metrics.csv`, one row per record and one column per key;
* `none`: no extra backend.

Every backend gets the same metric names (`train/loss`, `eval/reward`, `time/SPS-total`, ...) at the same step,
the collected frames per agent as in the reference. Images (eval history plots) go to wandb and TensorBoard
and are recorded in the JSONL by their path relative to the run directory.

Resume (`RunLogger(..., resume_from=STEP)`): records past the restored checkpoint's step are dropped, so each
iteration appears once after a crash and resume (the resumed run logs them again). See `RunLogger`.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings

import numpy as np

from train.config import logger_backends
from train.log_backends import (
    CSV_FILE,
    TB_DIR,
    WANDB_DIR,
    CsvBackend,
    TensorBoardBackend,
    WandbBackend,
    atomic_write,
    complete_text,
)

METRICS_FILE = "metrics.jsonl"

__all__ = ["METRICS_FILE", "CSV_FILE", "TB_DIR", "RunLogger", "destinations", "read_metrics"]


def _clean(value):
    """JSON-safe scalars: numpy -> Python, non-finite floats -> None."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.item() if np.ndim(value) == 0 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def read_metrics(run_dir: str) -> list[dict]:
    """All records of `<run_dir>/metrics.jsonl`, in order (a last line torn by a `kill -9` is not a record)."""
    text, _ = complete_text(os.path.join(run_dir, METRICS_FILE))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _wandb_on(cfg) -> bool:
    return "wandb" in logger_backends(cfg) and cfg.logger.mode != "disabled"


def destinations(cfg, run_dir: str) -> dict[str, str]:
    """Where each active backend writes, `{name: path}` (for a run's header); wandb online names its project."""
    out = {"jsonl": os.path.join(run_dir, METRICS_FILE)}
    names = logger_backends(cfg)
    if "csv" in names:
        out["csv"] = os.path.join(run_dir, CSV_FILE)
    if "tensorboard" in names:
        out["tensorboard"] = os.path.join(run_dir, TB_DIR)
    if _wandb_on(cfg):
        online = cfg.logger.mode == "online"
        out["wandb"] = f"online, project {cfg.logger.project}" if online else os.path.join(run_dir, WANDB_DIR)
    return out


def _truncate_jsonl(path: str, resume_from: int | None) -> None:
    """Drop a torn last line and, on resume, every record whose step is past `resume_from` (atomic rewrite)."""
    text, torn = complete_text(path)
    if resume_from is None and not torn:
        return
    kept, unreadable = [], 0
    for line in text.splitlines(keepends=True):
        if not line.strip():
            continue
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            unreadable += 1
            continue
        if resume_from is None or step <= resume_from:
            kept.append(line)
    if unreadable:
        warnings.warn(f"{path}: dropped {unreadable} unreadable record(s) while resuming", stacklevel=3)
    atomic_write(path, "".join(kept))


class RunLogger:
    """`log(metrics, step, **extra)`, `log_image(key, path, step)`, `close()`; also a context manager.

    Args:
        cfg: the trainer config (`cfg.logger` is read: `backend`, `mode`, `project`, `group`, `exp_name`).
        run_dir: the run directory; created if missing.
        config_dict: the plain config, stored in wandb's run config.
        resume_from: the step of the checkpoint the run resumed from, in the unit of `step` (collected frames
            per agent: the restored iteration x frames per iteration), or None for a fresh run. Records with
            a step greater than it are dropped from `metrics.jsonl` and `metrics.csv` (atomic rewrite:
            a temporary file in the run directory, then `os.replace`) and hidden in TensorBoard (purge at
            `resume_from + 1`); records at or before it are kept, so the restored iteration's own record and
            its eval records (logged at that iteration's step) stay. wandb cannot drop history: see
            `train.log_backends.WandbBackend`. With None, existing files are appended to (only a torn last
            line is removed); refusing a reused run directory is the caller's job.
    """

    def __init__(self, cfg, run_dir: str, config_dict: dict | None = None, resume_from: int | None = None):
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        path = os.path.join(run_dir, METRICS_FILE)
        if os.path.isfile(path):
            _truncate_jsonl(path, resume_from)
        self._t0 = time.time()
        self._fh = open(path, "a", buffering=1)
        self.backends = []
        try:
            self._open_backends(cfg, config_dict, resume_from)
        except BaseException:
            self.close()
            raise

    def _open_backends(self, cfg, config_dict, resume_from) -> None:
        names = logger_backends(cfg)
        if "csv" in names:
            self.backends.append(CsvBackend(os.path.join(self.run_dir, CSV_FILE), resume_from))
        if "tensorboard" in names:
            self.backends.append(TensorBoardBackend(os.path.join(self.run_dir, TB_DIR), resume_from))
        if _wandb_on(cfg):
            backend = WandbBackend.open(cfg.logger, self.run_dir, config_dict)
            if backend is not None:
                self.backends.append(backend)

    def log(self, metrics: dict, step: int, **extra) -> None:
        step = int(step)
        clean = {k: _clean(v) for k, v in metrics.items()}
        record = {"step": step, "wall_time": round(time.time() - self._t0, 3), **extra, **clean}
        self._fh.write(json.dumps(record) + "\n")
        for backend in self.backends:
            backend.log(step, clean, record)

    def log_image(self, key: str, path: str, step: int) -> None:
        step = int(step)
        self._fh.write(json.dumps({"step": step, key: os.path.relpath(path, self.run_dir)}) + "\n")
        for backend in self.backends:
            backend.log_image(key, path, step)

    def close(self) -> None:
        self._fh.close()
        backends, self.backends = self.backends, []
        for backend in backends:
            backend.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
