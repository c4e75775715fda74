"""Shared helpers: timing, machine description, JSON files, command-line lists, published reference figures."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

SCHEMA = "trading_jax.benchmarks/1"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# TorchTrade 0.1.0 as published in issue 4 (2-core CPU, torch on CPU, 1Hour frame, window 24, L=3,
# levels [-1, 0, 1], random actions). NOT measured here: context only.
REFERENCE_PUBLISHED = {
    "source": "TorchTrade 0.1.0, published figures quoted in issue 4 (2-core CPU); not measured here",
    "env": {
        "scalar_loop": 9.2e3,
        "process_pool_2": 3.6e3,
        "torch_vectorized": {64: 143e3, 256: 524e3, 1024: 1.5e6, 5000: 3.2e6},
    },
    "ppo": {"num_envs": 64, "collect_fps": 38e3, "total_fps": 10.5e3},
}


# --------------------------------------------------------------------------------------- timing
def block(x):
    """`jax.block_until_ready` without importing JAX at module load."""
    import jax

    return jax.block_until_ready(x)


def compile_timed(jitted, *args) -> tuple[Any, float]:
    """`jitted.lower(*args).compile()` and its wall time in seconds (tracing + lowering + XLA compile)."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def time_call(fn: Callable, *args) -> tuple[Any, float]:
    """One call, blocked until its outputs are ready: `(outputs, seconds)`."""
    t0 = time.perf_counter()
    out = block(fn(*args))
    return out, time.perf_counter() - t0


def time_repeats(fn: Callable, *args, repeats: int) -> list[float]:
    """Wall times of `repeats` blocked calls (the caller has done the warm-up)."""
    return [time_call(fn, *args)[1] for _ in range(max(int(repeats), 1))]


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


# --------------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(dtype: str | None = None) -> dict:
    """CPU model, cores, RAM, Python / jax / jaxlib versions, backend, device kind, dtype and date."""
    import jax
    import jaxlib
    import psutil

    dev = jax.devices()[0]
    vm = psutil.virtual_memory()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_cores_usable": affinity,
        "ram_total_bytes": int(vm.total),
        "ram_available_bytes": int(vm.available),
        "load_average_at_start": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "dtype": dtype,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def machine_label(machine: dict) -> str:
    """Short name of a machine for tables and legends, e.g. `cpu: Intel Xeon (2 cores)` or `gpu: NVIDIA H100`."""
    if machine.get("backend") == "cpu":
        return f"cpu: {machine.get('cpu_model', '?')} ({machine.get('cpu_cores_usable', '?')} cores)"
    return f"{machine.get('backend')}: {machine.get('device_kind')}"


# --------------------------------------------------------------------------------------- files and args
def write_json(path: str, payload: dict) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1, default=_json_default)
        fh.write("\n")
    return path


def _json_default(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_json(path: str) -> dict:
    with open(path) as fh:
        data = json.load(fh)
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a benchmark result (schema {data.get('schema')!r}, expected {SCHEMA!r})")
    return data


def int_list(text: str) -> list[int]:
    """`"1,8,32"` -> `[1, 8, 32]` (argparse type); `k` / `M` suffixes allowed (`"64k"`)."""
    out = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1
        if part[-1] in "km":
            mult = 1024 if part[-1] == "k" else 1024 * 1024
            part = part[:-1]
        out.append(int(part) * mult)
    if not out or any(n < 1 for n in out):
        raise ValueError(f"expected a comma-separated list of positive ints, got {text!r}")
    return out


def str_list(text: str) -> list[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


def si(x: float | None, digits: int = 3) -> str:
    """`1.53e6` -> `1.53M` (steps/s and frames/s in tables)."""
    if x is None or x != x:
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    return f"{x:.{digits}g}"
