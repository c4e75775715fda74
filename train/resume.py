"""What a resumed run checks before it goes on: the checkpoint it continues (the newest intact one), and
whether it continues on other data or with a rebuilt schedule than the run had (a `RunWarning` each)."""

from __future__ import annotations

import warnings

from omegaconf import OmegaConf

from train import parallel
from train.checkpoint import CheckpointError, NoCheckpointError, load_checkpoint
from train.config import ConfigError
from train.data import describe_data_change
from train.errors import RunWarning

# Keys whose change on resume rebuilds the LR / clip schedules (they set the total number of updates).
SCHEDULE_KEYS = (
    "collector.total_frames",
    "optim.lr",
    "optim.anneal_lr",
    "loss.clip_epsilon",
    "loss.anneal_clip_epsilon",
    "loss.ppo_epochs",
    "loss.mini_batch_size",
)


def load_resume(cfg) -> dict:
    """The newest intact checkpoint of `checkpoint.resume` (damaged newer ones are skipped with a warning)."""
    try:
        return load_checkpoint(str(cfg.checkpoint.resume))
    except NoCheckpointError as err:
        raise ConfigError(
            f"checkpoint.resume={cfg.checkpoint.resume}: {err}; a run stopped before its first checkpoint cannot "
            "be resumed: start it again in a new logger.run_dir"
        ) from None
    except CheckpointError as err:
        raise ConfigError(f"checkpoint.resume={cfg.checkpoint.resume}: {err}") from None


def _saved_value(saved: dict, key: str):
    node = saved
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def report_resume(cfg, setup, fns, ckpt: dict, runner) -> None:
    """Warn when a resume trains on other data than the run's, or with a rebuilt LR / clip schedule (a
    larger `collector.total_frames` restarts the annealing from a higher value, for instance)."""
    change = describe_data_change(ckpt["meta"].get("data"), setup.data)
    if change:
        frozen = " with the run's frozen feature statistics (features.json)" if setup.features else ""
        warnings.warn(f"resume: {change}; training goes on with it{frozen}", RunWarning, stacklevel=3)
    saved = OmegaConf.to_container(OmegaConf.create(ckpt["config"]), resolve=False)  # compared as text
    changed = [
        f"{k} changed from {_saved_value(saved, k)} to {OmegaConf.select(cfg, k)}"
        for k in SCHEDULE_KEYS
        if str(_saved_value(saved, k)) != str(OmegaConf.select(cfg, k))
    ]
    if changed:
        step = int(parallel.first_value(runner.train.update_step))
        warnings.warn(
            f"resume: {', '.join(changed)}: the LR/clip schedule is rebuilt for {cfg.collector.total_frames} "
            f"frames ({fns.total_updates} updates; lr {float(fns.lr_schedule(step)):.4g} at the restored update "
            f"{step})",
            RunWarning,
            stacklevel=3,
        )
