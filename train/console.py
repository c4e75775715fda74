"""What a run prints before its progress bar: a header within a second or two of the start, then a timed
line for each slow start-up step (loading the data, compiling), so a first run never sits silent while XLA
compiles."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

from rich.console import Console

from train.config import num_iterations, steps_per_iteration
from train.loggers import destinations

BUNDLED = "the bundled BTC/USDT 1-minute sample (trading_jax.datasets)"


def _console(file=None) -> Console:
    out = file or sys.stdout
    return Console(file=out, width=None if out.isatty() else 120, highlight=False)


def header_lines(cfg, run_dir: str, devices: list, cache_dir, resumed: dict | None = None) -> list[str]:
    """The header of a training run, one fact per line (`resumed`: the checkpoint a resumed run starts from)."""
    e = cfg.env
    steps = steps_per_iteration(cfg)
    data = os.path.abspath(e.data_path) if e.data_path else BUNDLED
    split = f"train < {e.test_split_start} <= test" if e.test_split_start else "no test split"
    kinds = sorted({d.platform for d in devices})
    logging = ", ".join(f"{name} {where}" for name, where in destinations(cfg, run_dir).items())
    lines = [
        f"run dir   {run_dir}",
        f"data      {data} ({split})",
        f"envs      {int(e.num_envs)} x {steps} steps = {steps * int(e.num_envs):,} frames per iteration, "
        f"{num_iterations(cfg):,} iterations, {int(cfg.collector.total_frames):,} frames"
        + (f", {int(cfg.num_seeds)} seeds" if int(cfg.num_seeds) > 1 else ""),
        f"devices   {len(devices)} x {'/'.join(kinds)}",
        f"logging   {logging}",
        f"cache     {cache_dir or 'off'} (compiled programs)",
    ]
    if resumed is not None:
        lines.insert(1, f"resume    from {resumed['path']} (iteration {resumed['iteration']})")
    return lines


def print_header(lines: list[str], file=None) -> None:
    console = _console(file)
    console.print("[bold]trading_jax PPO[/bold]")
    for line in lines:
        console.print("  " + line, soft_wrap=True)


@contextmanager
def timed(what: str, file=None, enabled: bool = True):
    """Show `what…` with its elapsed time while the body runs (a live spinner on a terminal, two plain lines
    otherwise), then how long it took. `enabled=False`: silent."""
    console = _console(file)
    t0 = time.perf_counter()
    if not enabled:
        yield
        return
    if not console.is_terminal:
        console.print(f"{what}…")
        yield
        console.print(f"{what}: done in {time.perf_counter() - t0:.1f} s")
        return
    stop = threading.Event()
    with console.status(f"{what}…") as status:

        def tick():
            while not stop.wait(0.5):
                status.update(f"{what}… {time.perf_counter() - t0:.0f} s")

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
    console.print(f"{what}: done in {time.perf_counter() - t0:.1f} s")
