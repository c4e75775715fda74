"""Profile one env step: XLA's cost analysis, the kernels of the compiled step loop, and a `jax.profiler` trace.

    python -m benchmarks.profile_step [--config a] [--num-envs 1024] [--trace DIR]

It compiles the env benchmark's program (`benchmarks.programs.make_program`) and prints
* `compiled.cost_analysis()`: flops and bytes accessed of the whole program;
* the kernels (fusions) of the step loop's body in the optimised HLO, each with its element-wise op count:
  the sum is the work per lane and step, and a kernel that repeats the trade logic shows up at once (the
  env's compute-once helper exists to keep XLA from doing that);
* with `--trace DIR`, the time per step of the slowest kernels, from a `jax.profiler` trace (Perfetto JSON,
  also readable in TensorBoard). The tracer adds its own overhead to every kernel, so compare kernels with
  each other, not with the benchmark's steps/s.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re

import jax

from benchmarks import configs
from benchmarks.programs import make_program

CHUNK = 32


def loop_kernels(hlo: str) -> list[tuple[str, str, int]]:
    """`(name, shape, element-wise ops)` of every fusion in the largest while-loop body of `hlo`."""
    comps = {block.strip().split(" ", 1)[0].lstrip("%"): block for block in re.split(r"\n\n", hlo)}

    def kernels(body: str):
        out = []
        for line in body.split("\n"):
            m = re.search(r"%(\S+) = (.+?) fusion\(.*calls=%([\w.\-]+)", line)
            if m:
                ops = re.findall(r"= \S+ ([\w\-]+)\(", comps.get(m.group(3), ""))
                out.append((m.group(1), m.group(2), sum(o not in ("parameter", "constant", "broadcast", "bitcast")
                                                        for o in ops)))
        return out

    bodies = set(re.findall(r"body=%?([\w.\-]+)", hlo))
    return max((kernels(comps.get(b, "")) for b in bodies), key=lambda k: sum(n for *_, n in k), default=[])


def trace_top(program, args, directory: str, steps: int, top: int = 15) -> list[tuple[str, float]]:
    with jax.profiler.trace(directory, create_perfetto_trace=True):
        jax.block_until_ready(program(*args))
    path = sorted(glob.glob(f"{directory}/**/*.trace.json.gz", recursive=True))[-1]
    with gzip.open(path, "rt") as fh:
        events = [e for e in json.load(fh)["traceEvents"] if e.get("ph") == "X" and "fusion" in e.get("name", "")]
    total = collections.Counter()
    for e in events:
        total[e["name"]] += e.get("dur", 0)
    return [(name, us / steps) for name, us in total.most_common(top)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="a", help="benchmark config a, b or c")
    p.add_argument("--num-envs", type=int, default=1024)
    p.add_argument("--trace", default=None, metavar="DIR", help="also write a jax.profiler trace to DIR")
    args = p.parse_args(argv)

    env, params = configs.build_env(args.config)
    program = make_program(env, args.num_envs, CHUNK)
    key = jax.random.PRNGKey(0)
    compiled = program.lower(params, key, 1).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    print(f"config {args.config}, {args.num_envs} envs, one chunk of {CHUNK} steps: "
          f"{cost.get('flops', float('nan')):.3g} flops, {cost.get('bytes accessed', float('nan')):.3g} bytes accessed")
    kernels = loop_kernels(compiled.as_text())
    print(f"\nstep loop: {len(kernels)} kernels, {sum(n for *_, n in kernels)} element-wise ops per lane and step")
    for name, shape, n in sorted(kernels, key=lambda k: -k[2])[:15]:
        print(f"  {n:4d} ops  {shape:28s} {name}")
    if args.trace:
        chunks = 10
        jax.block_until_ready(program(params, key, 2))
        print(f"\nslowest kernels (us per step, from the trace in {args.trace}):")
        for name, us in trace_top(program, (params, key, chunks), args.trace, chunks * CHUNK):
            print(f"  {us:8.2f}  {name}")


if __name__ == "__main__":
    main()
