"""Run logging: `metrics.jsonl` in the run directory always, plus wandb (offline unless told otherwise).

`logger.backend=wandb` (default) logs to wandb in `logger.mode` (offline by default: files under
`<run_dir>/wandb`, sync later with `wandb sync`); `logger.mode=online` streams; `logger.backend=none` turns
wandb off. Steps are collected frames, as in the reference. Images (eval history plots) are logged as
`wandb.Image` and recorded in the JSONL by their path relative to the run directory.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
import warnings

import numpy as np

METRICS_FILE = "metrics.jsonl"


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
    """All records of `<run_dir>/metrics.jsonl`, in order."""
    with open(os.path.join(run_dir, METRICS_FILE)) as fh:
        return [json.loads(line) for line in fh if line.strip()]


class RunLogger:
    """`log(metrics, step)`, `log_image(key, path, step)`, `close()`."""

    def __init__(self, cfg, run_dir: str, config_dict: dict | None = None):
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        self._fh = open(os.path.join(run_dir, METRICS_FILE), "a", buffering=1)
        self._t0 = time.time()
        self._wandb = None
        lg = cfg.logger
        if lg.backend == "wandb" and lg.mode != "disabled":
            self._wandb = self._init_wandb(lg, run_dir, config_dict)

    @staticmethod
    def _init_wandb(lg, run_dir, config_dict):
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb
        except ImportError:  # pragma: no cover - wandb is a dependency
            warnings.warn(
                "logger.backend=wandb but wandb is not installed; logging to metrics.jsonl only", stacklevel=3
            )
            return None
        id_file = os.path.join(run_dir, "wandb_id.txt")
        if os.path.isfile(id_file):
            with open(id_file) as fh:
                run_id = fh.read().strip()
        else:
            run_id = uuid.uuid4().hex[:8]
            with open(id_file, "w") as fh:
                fh.write(run_id)
        try:
            return wandb.init(
                project=lg.project,
                group=lg.group,
                name=lg.exp_name,
                dir=run_dir,
                mode=lg.mode,
                id=run_id,
                resume="allow",
                config=config_dict,
                settings=wandb.Settings(silent=True, console="off"),
            )
        except Exception as err:  # noqa: BLE001 - logging must not kill a training run
            if lg.mode == "online":
                raise RuntimeError(
                    f"wandb online logging failed to start ({err}); run `wandb login`, or use "
                    "logger.mode=offline or logger.backend=none"
                ) from err
            warnings.warn(f"wandb failed to start ({err}); logging to metrics.jsonl only", stacklevel=3)
            return None

    def log(self, metrics: dict, step: int, **extra) -> None:
        record = {"step": int(step), "wall_time": round(time.time() - self._t0, 3), **extra}
        record.update({k: _clean(v) for k, v in metrics.items()})
        self._fh.write(json.dumps(record) + "\n")
        if self._wandb is not None:
            finite = {k: v for k, v in record.items() if v is not None and k not in ("step",)}
            self._wandb.log(finite, step=int(step))

    def log_image(self, key: str, path: str, step: int) -> None:
        rel = os.path.relpath(path, self.run_dir)
        self._fh.write(json.dumps({"step": int(step), key: rel}) + "\n")
        if self._wandb is not None:
            import wandb

            self._wandb.log({key: wandb.Image(path)}, step=int(step))

    def close(self) -> None:
        self._fh.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
