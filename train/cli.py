"""The command line of the trainer (`python -m train.ppo`): argv, `--help`, the run, the summary table.

    python -m train.ppo [CONFIG.yaml] [group.key=value ...]        # see train/config.py for every key
    python -m train.ppo --help                                     # list the keys and defaults
"""

from __future__ import annotations

import os
import sys

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from train import parallel
from train.checkpoint import load_checkpoint
from train.config import ConfigError, default_config, describe_keys, load_config, steps_per_iteration
from train.loop import TrainingDiverged, TrainResult, format_metric, train

SUMMARY_KEYS = (
    "train/reward",
    "train/episode_length",
    "train/loss_objective",
    "train/loss_critic",
    "train/loss_entropy",
    "train/approx_kl",
    "train/clip_fraction",
    "train/explained_variance",
    "train/lr",
    "train/clip_epsilon",
    "eval/reward",
    "eval/final_pv",
    "eval/bh_log_return",
    "eval/sharpe",
    "eval/max_drawdown",
    "eval/num_trades",
    "eval/train_reward",
    "eval/train_bh_log_return",
    "time/SPS-collecting (median)",
    "time/SPS-total (median)",
    "time/speed",
    "time/compile",
    "time/wall",
)


def print_summary(cfg, result: TrainResult, file=None) -> None:
    """A rich table of the final metrics (mean ± std over seeds when num_seeds > 1)."""
    record = dict(result.metrics)
    record.update(result.evaluation)
    table = Table(
        title=f"PPO summary: {result.iteration} iterations, "
        f"{result.iteration * steps_per_iteration(cfg) * cfg.env.num_envs:,} frames per seed"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in SUMMARY_KEYS:
        if k not in record:
            continue
        v = record[k]
        std = record.get(k + "_seed_std")
        text = format_metric(v) if std is None else f"{format_metric(v)} ± {format_metric(std)}"
        table.add_row(k, text)
    table.add_row("run_dir", result.run_dir)
    if result.checkpoint:
        table.add_row("checkpoint", os.path.relpath(result.checkpoint, result.run_dir))
    out = file or sys.stdout
    Console(file=out, width=None if out.isatty() else 120).print(table)


USAGE = """usage: python -m train.ppo [CONFIG.yaml ...] [group.key=value ...]

Trains PPO on the trading env (one jitted XLA program per iteration). Overrides as in the reference:
  python -m train.ppo env.num_envs=128 model.hidden_size=256 optim.lr=1e-4
Resume a run exactly:  python -m train.ppo checkpoint.resume=RUN_DIR
GPU-sized (the reference's 5000 envs, 100k frames per batch):
  python -m train.ppo env.num_envs=5000 collector.frames_per_batch=100000 collector.total_frames=100000000 \\
      loss.mini_batch_size=33333 eval.test_interval=10000000

Keys (type, default):
"""


def config_from_argv(argv: list[str]):
    """Parse the command line; with `checkpoint.resume=RUN_DIR`, the run's saved config is the base (with
    `collector.stop_at_iteration` cleared) and the command line's overrides apply on top."""
    cfg = load_config(argv)
    if cfg.checkpoint.resume:
        try:
            saved = load_checkpoint(str(cfg.checkpoint.resume))["config"]
        except FileNotFoundError as err:
            raise ConfigError(f"checkpoint.resume: {err}") from None
        base = OmegaConf.merge(default_config(), OmegaConf.create(saved))
        base.collector.stop_at_iteration = None  # a resumed run goes on unless told to stop again
        for key in ("distributed", "coordinator_address", "num_processes", "process_id"):  # launch-specific
            base.parallel[key] = default_config().parallel[key]
        cfg = load_config(argv, base=base)
    return cfg


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + describe_keys())
        return 0
    try:
        cfg = config_from_argv(argv)
        parallel.initialize(cfg)  # before any JAX computation; a no-op unless parallel.distributed=true
        result = train(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if parallel.is_main_process():
        print_summary(cfg, result)
    return 0
