"""Both benchmarks at GPU sizes in one command (budgeted for < 5 minutes on one GPU), JSON + PNG into OUT_DIR.

    python -m benchmarks.gpu_run OUT_DIR            # on a machine with a GPU
    python -m benchmarks.gpu_run OUT_DIR --quick    # plumbing check at tiny sizes (any backend)

1. env throughput: configs a, b, c, float32, num_envs 1024 ... 1,048,576 (each point calibrated to 0.3 s, 3
   repeats), the Python baselines (1 s each), and device memory: num_envs doubled from 65,536 until out of
   memory (or a 45 s / 2**26 cap);
2. PPO throughput: num_envs 1024, 4096, 16384, 65536 (20 steps per env per iteration, the reference model).
Each part has a deadline inside `--budget-s` (270 s), so a slow machine skips its largest sizes rather
than overrunning (skipped points are listed in the JSON; the first point of each part always runs).
Writes env_throughput-gpu.{json,png}, ppo_throughput-gpu.{json,png} and summary.md (the Markdown tables).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# Let the memory probe use (almost) all of the device; must be set before JAX starts.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")

ENV_SIZES = "1024,4096,16384,65536,262144,1048576"
PPO_SIZES = "1024,4096,16384,65536"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_run", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--quick", action="store_true", help="tiny sizes, any backend (checks the plumbing)")
    p.add_argument("--x64", action="store_true", help="also float64 env runs (longer)")
    p.add_argument("--env-sizes", default=ENV_SIZES)
    p.add_argument("--ppo-sizes", default=PPO_SIZES)
    p.add_argument("--allow-busy", action="store_true", help="passed on to both benchmarks (see their --help)")
    p.add_argument("--budget-s", type=float, default=270,
                   help="overall time budget: the env part gets 45%% of it, PPO what is left minus a margin")
    args = p.parse_args(argv)

    import jax

    from benchmarks import env_throughput, ppo_throughput, report

    backend = jax.default_backend()
    if backend == "cpu" and not args.quick:
        print("warning: no accelerator found (backend cpu); running the GPU sizes on CPU will be slow",
              file=sys.stderr)
    t0 = time.perf_counter()
    if args.quick:
        env_argv = ["--num-envs", "8", "--configs", "a", "--steps", "16", "--repeats", "1", "--baseline-s",
                    "0.2", "--memory", "64"]
        ppo_argv = ["--num-envs", "8", "--iterations", "1", "--steps-per-env", "4", "--hidden", "16", "--layers", "1"]
    else:
        env_argv = ["--num-envs", args.env_sizes, "--configs", "a,b,c", "--repeats", "3", "--target-s", "0.3",
                    "--baseline-s", "1", "--memory", "65536", "--deadline-s", str(0.45 * args.budget_s)]
        ppo_argv = ["--num-envs", args.ppo_sizes, "--iterations", "3"]
    if args.x64:
        env_argv.append("--x64")
    if args.allow_busy or args.quick:  # a plumbing check is not a measurement
        env_argv.append("--allow-busy")
        ppo_argv.append("--allow-busy")
    env = env_throughput.main(env_argv + ["--out", args.out_dir])
    if not args.quick:  # the env part's deadline only stops new points: give PPO what is left, minus a margin
        ppo_argv += ["--deadline-s", str(max(0.0, args.budget_s - (time.perf_counter() - t0) - 45))]
    ppo = ppo_throughput.main(ppo_argv + ["--out", args.out_dir])
    with open(os.path.join(args.out_dir, "summary.md"), "w") as fh:
        fh.write(report.env_markdown(env) + "\n\n" + report.ppo_markdown(ppo) + "\n")
    print(f"\ngpu_run: {time.perf_counter() - t0:.0f} s in all; results in {args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
