"""Subprocess side of tests/train/test_faults.py: `python -m train.ppo ARGS` with a pause point where the
test kills it (`kill -9`).

    FAULT_PAUSE=iteration:N  python -m tests.support.fault_worker ARGS   # inside iteration N's program
    FAULT_PAUSE=checkpoint:N python -m tests.support.fault_worker ARGS   # inside checkpoint N's write

At the point it prints `PAUSE <what> <N>` and sleeps, so the kill lands exactly there:

* `iteration:N`: iteration N's jitted program (collection and update are one XLA program) has been dispatched
  and its metrics are not fetched yet: nothing of iteration N is logged or written.
* `checkpoint:N`: orbax has written checkpoint N into its temporary folder and is about to rename it into
  place (the commit of an atomic write): the temporary folder is left behind by the kill.

Without `FAULT_PAUSE` it is `python -m train.ppo`.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_S = 120.0


def _pause(what: str, n: int) -> None:
    print(f"PAUSE {what} {n}", flush=True)
    time.sleep(PAUSE_S)


def _pause_in_iteration(n: int) -> None:
    from train import loop, parallel

    compile_ = loop._TrainingRun.compile

    def compile_with_pause(self, runner):
        compile_(self, runner)
        iteration = self.iteration

        def paused(env_params, runner):
            out = iteration(env_params, runner)  # dispatched; XLA runs it while this thread sleeps
            if int(parallel.first_value(runner.iteration)) + 1 == n:
                _pause("iteration", n)
            return out

        self.iteration = paused

    loop._TrainingRun.compile = compile_with_pause


def _pause_in_checkpoint(n: int) -> None:
    from orbax.checkpoint._src.path import async_path

    from train.checkpoint import PREFIX

    rename = async_path.rename  # orbax's commit of a step: temporary folder -> final name

    async def rename_with_pause(src, dst):
        if os.path.basename(str(dst)) == f"{PREFIX}_{n:08d}":
            _pause("checkpoint", n)
        return await rename(src, dst)

    async_path.rename = rename_with_pause


def main(argv: list[str]) -> int:
    spec = os.environ.get("FAULT_PAUSE")
    if spec:
        what, n = spec.split(":")
        {"iteration": _pause_in_iteration, "checkpoint": _pause_in_checkpoint}[what](int(n))
    from train.cli import main as train_main

    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
