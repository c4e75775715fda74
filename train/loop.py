"""The host loop of a training run: `train(cfg)` calls the compiled PPO iteration (`train.ppo.make_train`)
once per batch, fetches its metrics (the only host sync), evaluates the deterministic policy every
`eval.test_interval` frames, writes checkpoints and logs, and draws a tqdm bar.

Timing (Q6). `time/SPS-total` = frames collected in the iteration (all seeds) / the iteration's whole wall
time, including its eval, checkpoint and logging, compile excluded (everything is compiled ahead, reported
once as `time/compile`), and excluding the diagnostic call below. Collection and update are one XLA
program, so `time/SPS-collecting` comes from a separate compiled collect-only call on the current state
every `logger.timing_interval` iterations (its result is discarded, so training is unaffected): frames /
that call's wall time.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from train import parallel
from train.checkpoint import CKPT_DIR, load_checkpoint, restore_state, save_checkpoint
from train.config import ConfigError, num_iterations, to_dict, to_yaml
from train.data import build_setup, load_features, save_features
from train.evaluate import eval_key, evaluate_policy, lane, make_episode_runner, save_history_png
from train.loggers import RunLogger
from train.ppo import TrainFns, make_train


class TrainingDiverged(RuntimeError):
    """A NaN or inf in the loss or the parameters; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: str
    runner: Any
    iteration: int
    metrics: dict = field(default_factory=dict)  # last logged record (seed means)
    evaluation: dict = field(default_factory=dict)  # last eval record (seed means)
    checkpoint: str | None = None


def reduce_seeds(metrics: dict, prefix_std: str = "_seed_std") -> dict[str, float]:
    """Per-seed arrays `[K]` -> `{name: mean}` plus `{name + "_seed_std": std}` when K > 1 (NaN ignored)."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v, np.float64).reshape(-1)
        finite = v[np.isfinite(v)]
        out[k] = float(finite.mean()) if len(finite) else float("nan")
        if len(v) > 1:
            out[k + prefix_std] = float(finite.std()) if len(finite) > 1 else float("nan")
    return out


def format_metric(x: float | None) -> str:
    """A metric for a table or the progress bar: 4 significant digits, `n/a` when missing or not finite."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}"


# --------------------------------------------------------------------------------------- run directory
def resolve_run_dir(cfg) -> str:
    """`logger.run_dir`; else the resumed run's directory; else a new `<root_dir>/<exp_name>-<time>[-n]`."""
    if cfg.logger.run_dir:
        return str(cfg.logger.run_dir)
    resume = cfg.checkpoint.resume
    if resume:
        path = os.path.abspath(str(resume))
        if os.path.isfile(path):
            path = os.path.dirname(path)
        if os.path.basename(path) == CKPT_DIR:
            path = os.path.dirname(path)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(str(cfg.logger.root_dir), f"{cfg.logger.exp_name}-{stamp}")
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def _write_run_files(cfg, setup, run_dir: str) -> None:
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.yaml"), "w") as fh:
        fh.write(to_yaml(cfg))
    save_features(os.path.join(run_dir, "features.json"), setup.features)


def _build_setup(cfg, frame, run_dir: str, resumed: bool):
    """`build_setup`, with the feature statistics the run was trained with when it is resumed."""
    frozen = None
    features_file = os.path.join(run_dir, "features.json")
    if resumed and os.path.isfile(features_file):
        frozen = load_features(features_file)
    try:
        return build_setup(cfg, frame, frozen_features=frozen)
    except ValueError as err:
        raise ConfigError(str(err)) from None


# --------------------------------------------------------------------------------------- AOT compile
def _signature(args) -> tuple:
    """What a compiled program depends on besides the function: tree structure, shapes, dtypes, shardings."""
    leaves, treedef = jax.tree.flatten(args)
    return (str(treedef),) + tuple(
        (np.shape(x), str(x.dtype), bool(getattr(x, "weak_type", False)), str(getattr(x, "sharding", None)))
        for x in leaves
    )


def compile_ahead(fn, *args, cache: dict | None = None):
    """Compile ahead of time; returns the compiled callable. With `cache` (a dict owned by whoever owns
    `fn`), a later call with inputs of the same signature reuses the executable (tests and resumes that
    call `train` again with the same `TrainFns`)."""
    if cache is None:
        return fn.lower(*args).compile()
    key = (id(fn), _signature(args))
    if key not in cache:
        cache[key] = (fn, fn.lower(*args).compile())  # keeps fn alive, so its id stays unique
    return cache[key][1]


# --------------------------------------------------------------------------------------- evaluation
class TrainingEvaluator:
    """The trainer's evaluation: deterministic test-split and training-window episodes for every seed
    (`train.evaluate`), history PNGs for seed 0."""

    def __init__(self, cfg, setup, network, run_dir):
        self.cfg, self.run_dir = cfg, run_dir
        self.leverage = float(cfg.env.leverage)
        self.allows_short = bool(setup.env_config.allows_short)
        self.spans = []
        if setup.test is not None:
            self.spans.append(("eval/", "history", make_episode_runner(setup.test, network)))
        self.spans.append(("eval/train_", "train_history", make_episode_runner(setup.train_eval, network)))

    def compile(self, params, batch_stats, key):
        for i, (prefix, name, runner) in enumerate(self.spans):
            keys = jax.random.split(key, jax.tree.leaves(params)[0].shape[0])
            bundle = runner.bundle
            compiled = compile_ahead(runner.fn, params, batch_stats, bundle.params, keys, cache=bundle.cache)
            self.spans[i] = (prefix, name, type(runner)(runner.bundle, compiled))

    def __call__(self, params, batch_stats, key, frames: int, logger) -> dict:
        out = {}
        for prefix, name, runner in self.spans:
            summaries, rows = evaluate_policy(runner, params, batch_stats, key, self.leverage)
            per_seed = {k: np.asarray([s[k] for s in summaries]) for k in summaries[0]}
            for k, v in reduce_seeds(per_seed).items():
                out[prefix + k] = v
            if self.cfg.eval.plots:
                path = os.path.join(self.run_dir, "plots", f"{name}_{frames:012d}.png")
                m = runner.bundle.market
                save_history_png(
                    lane(rows, 0),
                    path,
                    self.leverage,
                    allows_short=self.allows_short,
                    title=f"{prefix.rstrip('/')} at {frames} frames: {m.exec_times[0]} .. {m.exec_times[-1]}",
                )
                logger.log_image(f"eval/{name}", path, frames)
        return out


# --------------------------------------------------------------------------------------- host loop
class _NullLogger:
    """The logger of processes other than 0: they log nothing."""

    def log(self, *args, **kwargs) -> None:
        pass

    def log_image(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def train(cfg, *, frame=None, setup=None, fns: TrainFns | None = None) -> TrainResult:
    """Run (or resume) a training run. `frame`: an OHLCV DataFrame instead of `env.data_path`.

    `setup` (from `train.data.build_setup`) and `fns` (from `make_train`) can be passed in to reuse
    compiled functions across runs of the same shapes (tests do this). Without `fns`, the device mesh
    comes from `parallel.devices` (`train.parallel.make_mesh`). With several processes every process calls
    this; only process 0 writes the run directory, logs, evaluates and checkpoints.
    """
    t_start = time.perf_counter()
    run_dir = resolve_run_dir(cfg)
    resume = cfg.checkpoint.resume
    ckpt = load_checkpoint(str(resume)) if resume else None
    if setup is None:
        setup = _build_setup(cfg, frame, run_dir, resumed=ckpt is not None)
    fns = fns or make_train(cfg, setup.train.env, parallel.make_mesh(cfg))
    if parallel.is_main_process():
        _write_run_files(cfg, setup, run_dir)
    run = _TrainingRun(cfg, setup, fns, run_dir)
    result = run.loop(run.compile(ckpt), ckpt)
    result.metrics.update(run.timing_summary())
    result.metrics["time/wall"] = time.perf_counter() - t_start
    return result


class _TrainingRun:
    """One call of `train`: the compiled programs, the evaluator, the logger and the loop's running numbers."""

    def __init__(self, cfg, setup, fns: TrainFns, run_dir: str):
        self.cfg, self.setup, self.fns, self.run_dir = cfg, setup, fns, run_dir
        self.main_process = parallel.is_main_process()
        self.cfg_yaml = to_yaml(cfg)
        self.num_seeds = int(cfg.num_seeds)
        self.frames_per_iteration = fns.frames_per_iteration
        seed_keys = jax.random.split(jax.random.PRNGKey(int(cfg.seed)), self.num_seeds)
        self.env_params, self.seed_keys = fns.place_inputs(setup.train.params, seed_keys)
        self.sps_collect = float("nan")
        self.sps_collect_all, self.sps_total_all = [], []
        self.last_train_reward, self.last_eval = float("nan"), float("nan")

    def policy_view(self, state):
        """The policy for evaluation and checkpoints; with a mesh, NumPy copies (a collective: every
        process calls this at the same point), evaluated on process 0's default device."""
        pair = (state.train.params, state.train.batch_stats)
        return pair if self.fns.mesh is None else self.fns.to_host(pair)

    def compile(self, ckpt):
        """The initial (or restored) runner, with the iteration, collection and evaluation compiled ahead."""
        cfg, fns = self.cfg, self.fns
        t0 = time.perf_counter()
        runner = fns.init(self.env_params, self.seed_keys)
        if ckpt is not None:
            runner = fns.place_runner(restore_state(runner, ckpt))
        self.start_it = int(parallel.first_value(runner.iteration))
        self.iteration = compile_ahead(fns.iteration, self.env_params, runner, cache=fns.compiled)
        timed = cfg.logger.timing_interval
        self.collect = compile_ahead(fns.collect, self.env_params, runner, cache=fns.compiled) if timed else None
        enabled = cfg.eval.enabled and self.main_process
        self.evaluator = TrainingEvaluator(cfg, self.setup, fns.network, self.run_dir) if enabled else None
        view = self.policy_view(runner) if cfg.eval.enabled else None
        if self.evaluator is not None:
            self.evaluator.compile(*view, eval_key(int(cfg.seed), 0))
        self.t_compile = time.perf_counter() - t0
        return runner

    def timing_summary(self) -> dict[str, float]:
        """The last collection SPS, the medians over this process's iterations (the last iteration's own SPS
        includes its final eval) and the compile time."""
        nan = float("nan")
        return {
            "time/SPS-collecting": self.sps_collect,
            "time/SPS-collecting (median)": float(np.median(self.sps_collect_all)) if self.sps_collect_all else nan,
            "time/SPS-total (median)": float(np.median(self.sps_total_all)) if self.sps_total_all else nan,
            "time/compile": self.t_compile,
        }

    def save(self, state, it: int, frames: int) -> str | None:
        """Checkpoint `state` (every process takes part with a mesh; process 0 writes)."""
        cfg = self.cfg
        if not cfg.checkpoint.enabled:
            return None
        if self.fns.mesh is not None:
            state = self.fns.to_host(state)
        if not self.main_process:
            return None
        policy = {"params": state.train.params, "batch_stats": state.train.batch_stats}
        meta = {
            "frames": frames,
            "num_seeds": self.num_seeds,
            "obs_dim": self.setup.obs_dim,
            "num_actions": self.setup.num_actions,
        }
        return save_checkpoint(
            self.run_dir,
            state,
            iteration=it,
            config_yaml=self.cfg_yaml,
            policy=policy,
            keep=int(cfg.checkpoint.keep),
            meta=meta,
        )

    def _progress_bar(self, n_it: int, start_it: int):
        fns, K, F = self.fns, self.num_seeds, self.frames_per_iteration
        if not (self.cfg.logger.progress and self.main_process):
            return None
        return tqdm(
            total=n_it * F,
            initial=start_it * F,
            unit="frames",
            unit_scale=True,
            dynamic_ncols=True,
            desc=("ppo" + (f" x{K}" if K > 1 else "") + (f" [{fns.mesh.size} dev]" if fns.mesh is not None else "")),
            file=sys.stderr,
        )

    def loop(self, runner, ckpt) -> TrainResult:
        """Iterate from the runner's iteration to the stop; the logger and the bar are closed on the way out."""
        cfg, fns, F, start_it = self.cfg, self.fns, self.frames_per_iteration, self.start_it
        self.logger = RunLogger(cfg, self.run_dir, to_dict(cfg)) if self.main_process else _NullLogger()
        n_it = num_iterations(cfg)
        stop = n_it if cfg.collector.stop_at_iteration is None else min(n_it, int(cfg.collector.stop_at_iteration))
        self.result = TrainResult(run_dir=self.run_dir, runner=runner, iteration=start_it)
        if ckpt is not None:
            self.result.checkpoint = ckpt["path"]
        self.t_loop = time.perf_counter()
        self.frames_this_run = 0
        self.bar = self._progress_bar(n_it, start_it)
        try:
            self.logger.log(
                {
                    "time/compile": self.t_compile,
                    "parallel/devices": fns.mesh.size if fns.mesh is not None else 1,
                    "parallel/processes": jax.process_count(),
                    "parallel/seeds_sharded": int(fns.seeds_sharded),
                },
                step=start_it * F,
                iteration=start_it,
            )
            for it in range(start_it, stop):
                runner = self._iterate(runner, it, start_it, last=it + 1 == stop)
        finally:
            if self.bar is not None:
                self.bar.close()
            self.logger.close()
        return self.result

    def _iterate(self, runner, it: int, start_it: int, last: bool):
        """One iteration with its timing, evaluation, checkpoint and log record."""
        K, F = self.num_seeds, self.frames_per_iteration
        t_it = time.perf_counter()
        new_runner, metrics = self.iteration(self.env_params, runner)
        metrics = self.fns.to_host(metrics)  # the one host sync of the iteration (replicated: no collective)
        t_train = time.perf_counter() - t_it
        frames = (it + 1) * F
        if not bool(np.all(metrics.pop("train/finite"))):
            self._diverged(metrics, it, frames)
        runner = new_runner
        log = reduce_seeds(metrics)
        log["time/iteration"] = t_train
        t_collect = self._time_collect(runner, it, start_it, log)
        self._evaluate_and_save(runner, it, frames, last, log)
        self.frames_this_run += K * F
        # the diagnostic collect-only call is not part of training: excluded
        log["time/SPS-total"] = K * F / (time.perf_counter() - t_it - t_collect)
        self.sps_total_all.append(log["time/SPS-total"])
        log["time/speed"] = self.frames_this_run / (time.perf_counter() - self.t_loop)
        self.logger.log(log, step=frames, iteration=it + 1)
        result = self.result
        result.metrics, result.iteration, result.runner = log, it + 1, runner
        if math.isfinite(log.get("train/reward", float("nan"))):
            self.last_train_reward = log["train/reward"]
        if self.bar is not None:
            self.bar.update(F)
            self.bar.set_postfix(
                reward=format_metric(self.last_train_reward), eval=format_metric(self.last_eval), refresh=False
            )
        return runner

    def _diverged(self, metrics: dict, it: int, frames: int):
        bad = reduce_seeds(metrics)
        self.logger.log(bad, step=frames, iteration=it + 1, diverged=True)
        where = self.result.checkpoint or "none was written yet"
        raise TrainingDiverged(
            f"non-finite loss or parameters at iteration {it + 1} (frames {frames}): "
            f"train/loss={format_metric(bad.get('train/loss'))}, "
            f"train/grad_norm={format_metric(bad.get('train/grad_norm'))}. "
            f"Stopping; the last good checkpoint is kept: {where}. Try a lower optim.lr or optim.max_grad_norm."
        )

    def _time_collect(self, runner, it: int, start_it: int, log: dict) -> float:
        """Every `logger.timing_interval` iterations, time the collect-only program on `runner`."""
        if self.collect is None or (it - start_it) % int(self.cfg.logger.timing_interval) != 0:
            return 0.0
        t_c = time.perf_counter()
        jax.block_until_ready(self.collect(self.env_params, runner))
        t_collect = time.perf_counter() - t_c
        self.sps_collect = self.num_seeds * self.frames_per_iteration / t_collect
        log["time/collecting"] = t_collect
        log["time/SPS-collecting"] = self.sps_collect
        self.sps_collect_all.append(self.sps_collect)
        return t_collect

    def _evaluate_and_save(self, runner, it: int, frames: int, last: bool, log: dict) -> None:
        """After the first iteration, when `eval.test_interval` frames are crossed, and at the end."""
        cfg, F = self.cfg, self.frames_per_iteration
        interval = int(cfg.eval.test_interval)
        crossed = (it * F) // interval < frames // interval
        if cfg.eval.enabled and (crossed or it == 0 or last):
            t_e = time.perf_counter()
            view = self.policy_view(runner)
            if self.evaluator is not None:
                ev = self.evaluator(*view, eval_key(int(cfg.seed), it + 1), frames, self.logger)
                log.update(ev)
                self.result.evaluation = ev
                self.last_eval = ev.get("eval/reward", ev.get("eval/train_reward", float("nan")))
            log["time/eval"] = time.perf_counter() - t_e
        if cfg.checkpoint.enabled and (crossed or last or (cfg.eval.enabled and it == 0)):
            t_s = time.perf_counter()
            self.result.checkpoint = self.save(runner, it + 1, frames)
            log["time/checkpoint"] = time.perf_counter() - t_s
