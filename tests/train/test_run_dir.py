"""A run directory is owned by one run (issue 11): absolute paths, no reuse by a fresh run, a lock against a
second live run (not against a dead one), resume writes into the folder resumed, stored configs unresolved.

Nothing here trains: every refusal happens before the data is loaded or a program compiled.
"""

import glob
import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from train.checkpoint import save_checkpoint
from train.cli import config_from_argv, main
from train.config import ConfigError, load_config, to_yaml
from train.rundir import LOCK_FILE, RunDirLock, check_run_dir, resume_dir, run_dir_of, stored_config

SECRET = "s3cr3t-value-42"


def _digest(folder) -> dict:
    return {
        os.path.relpath(p, folder): hashlib.sha256(open(p, "rb").read()).hexdigest()
        for p in glob.glob(os.path.join(folder, "**"), recursive=True)
        if os.path.isfile(p)
    }


def _run_with_config(folder, *args) -> str:
    """A run directory holding one (tiny) checkpoint whose stored config is `load_config(args)`."""
    save_checkpoint(str(folder), {"x": np.zeros(2, np.float32)}, iteration=1, config_yaml=to_yaml(load_config(args)))
    return str(folder)


def test_run_dir_is_absolute():
    assert run_dir_of(load_config(["logger.run_dir=runs/my-run"])) == os.path.abspath("runs/my-run")
    fresh = run_dir_of(load_config(["logger.root_dir=some/root"]))
    assert os.path.isabs(fresh) and fresh.startswith(os.path.abspath("some/root") + os.sep + "ppo-")


def test_a_fresh_run_refuses_a_used_run_dir(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "metrics.jsonl").write_text('{"step": 64, "iteration": 1}\n')
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    before = _digest(tmp_path)
    assert main([f"logger.run_dir={tmp_path}", "env.data_path=/nonexistent.csv"]) == 2  # refused before the data
    err = capsys.readouterr().err
    assert err == (
        f"error: logger.run_dir={tmp_path} already holds a run (checkpoints, config.yaml, metrics.jsonl); continue "
        f"it with checkpoint.resume={tmp_path}, or start a new run in a new logger.run_dir\n"
    )
    assert _digest(tmp_path) == before
    check_run_dir(str(tmp_path / "new"), resume=False)  # a new or empty directory is fine
    (tmp_path / "empty").mkdir()
    check_run_dir(str(tmp_path / "empty"), resume=False)


def test_the_lock_refuses_a_live_run_and_not_a_dead_one(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from train.rundir import RunDirLock; RunDirLock({str(tmp_path)!r}); "
         "print('locked', flush=True); import time; time.sleep(120)"],  # fmt: skip
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        message = re.escape(f"logger.run_dir={tmp_path} is in use by a live run (pid {holder.pid})")
        with pytest.raises(ConfigError, match=message):
            RunDirLock(str(tmp_path))
        with pytest.raises(ConfigError, match="in use by a live run"):
            check_run_dir(str(tmp_path), resume=True)
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock, the .lock file stays
        holder.wait()
    assert os.path.isfile(tmp_path / LOCK_FILE)
    check_run_dir(str(tmp_path), resume=False)  # a stale .lock alone is an empty directory
    lock = RunDirLock(str(tmp_path))
    assert open(tmp_path / LOCK_FILE).read() == str(os.getpid())
    lock.release()


def test_resume_always_writes_into_the_resumed_dir(tmp_path):
    run = _run_with_config(tmp_path / "copy", f"logger.run_dir={tmp_path / 'original'}", "logger.backend=none")
    for target in (run, f"{run}/checkpoints", f"{run}/checkpoints/ckpt_00000001"):
        assert resume_dir(target) == run
        cfg = config_from_argv([f"checkpoint.resume={target}"])
        assert cfg.logger.run_dir == run  # never the stored logger.run_dir
        assert run_dir_of(cfg) == run
    with pytest.raises(ConfigError, match="a resumed run writes into its own directory; to continue elsewhere, copy"):
        run_dir_of(load_config([f"checkpoint.resume={run}", f"logger.run_dir={tmp_path / 'other'}"]))


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = {
        tmp_path / "missing": "no such run directory",
        tmp_path / "file.txt": "a file, not a run directory",
        tmp_path / "empty": "no checkpoint found",
    }
    for path, message in cases.items():
        assert main([f"checkpoint.resume={path}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: checkpoint.resume={path}") and message in err and err.count("\n") == 1


def test_a_stored_interpolation_is_never_resolved(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBE_SECRET", SECRET)
    base = load_config(["logger.backend=none"])
    text = to_yaml(base).replace("project: trading_jax", "project: ${oc.env:PROBE_SECRET}")
    assert "${oc.env:PROBE_SECRET}" in text
    save_checkpoint(str(tmp_path), {"x": np.zeros(2, np.float32)}, iteration=1, config_yaml=text)
    with pytest.raises(ConfigError, match=r"logger.project='\$\{oc.env:PROBE_SECRET\}' is an interpolation; a stored"):
        config_from_argv([f"checkpoint.resume={tmp_path}"])
    assert main([f"checkpoint.resume={tmp_path}"]) == 2
    assert SECRET not in capsys.readouterr().err
    cfg = config_from_argv([f"checkpoint.resume={tmp_path}", "logger.project=mine"])  # overridden: fine
    assert cfg.logger.project == "mine"
    raw = stored_config(text.replace("${oc.env:PROBE_SECRET}", "plain"), "x")
    assert raw.logger.project == "plain"
    assert not any(SECRET.encode() in open(p, "rb").read() for p in glob.glob(f"{tmp_path}/**", recursive=True)
                   if os.path.isfile(p))  # fmt: skip


def test_command_line_interpolations_resolve_before_anything_runs(monkeypatch):
    monkeypatch.setenv("PROBE_PROJECT", "from-env")
    cfg = load_config(["logger.project=${oc.env:PROBE_PROJECT}", "eval.test_interval=${collector.frames_per_batch}"])
    assert cfg.logger.project == "from-env" and cfg.eval.test_interval == 1280
    assert "${" not in to_yaml(cfg)  # the run stores values


def test_an_unwritable_run_dir_exits_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main([f"logger.run_dir={blocker}/run"]) == 2
    assert capsys.readouterr().err == f"error: logger.run_dir={blocker}/run: cannot create it, {blocker} is a file\n"
