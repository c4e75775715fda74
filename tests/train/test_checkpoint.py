"""Checkpoints that cannot lie (issue 11): orbax layout, integrity check and fallback, exact resume of a copy or
after a damaged checkpoint, the log consistent with the checkpoints, the reports of a resume, the NaN guard.

The training runs reuse the session's compiled tiny program (`tiny_trainer`, tests/train/conftest.py).
"""

import glob
import hashlib
import json
import os
import shutil

import jax
import numpy as np
import pytest

from tests.support.train_synth import sine_frame
from train.checkpoint import (
    CheckpointError,
    CheckpointWriter,
    latest_checkpoint,
    load_checkpoint,
    restore_state,
    save_checkpoint,
)
from train.cli import config_from_argv, main
from train.config import load_config, to_yaml
from train.data import build_setup, load_features
from train.errors import RunWarning, TrainingDiverged
from train.loggers import read_metrics
from train.loop import train

ITERS = 4  # the tiny trainer's iterations; checkpoints after 1 (first eval), 2 (128 frames) and the last


def _digest(folder) -> dict:
    return {
        os.path.relpath(p, folder): hashlib.sha256(open(p, "rb").read()).hexdigest()
        for p in glob.glob(os.path.join(folder, "**"), recursive=True)
        if os.path.isfile(p)
    }


def _state_data_files(step_dir) -> list[str]:
    """The files holding a checkpoint's state arrays (orbax's merged OCDBT data files)."""
    return sorted(glob.glob(os.path.join(step_dir, "state", "d", "*")))


def _train_records(run_dir) -> list[dict]:
    return [r for r in read_metrics(str(run_dir)) if "train/loss" in r]


@pytest.fixture(scope="module")
def runs(tiny_trainer):
    """The uninterrupted run, and a run stopped at iteration 2 (checkpoints 1 and 2) to resume from."""
    t = tiny_trainer

    def run(*extra, **kw):
        return train(load_config(t.args + list(extra)), setup=kw.get("setup", t.setup), fns=t.fns)

    full = run(f"logger.run_dir={t.root / 'ck-full'}")
    run(f"logger.run_dir={t.root / 'ck-half'}", "collector.stop_at_iteration=2")
    return dict(t=t, run=run, full=full, half=t.root / "ck-half")


def _copy(runs, name):
    dst = runs["t"].root / name
    shutil.copytree(runs["half"], dst)
    return dst


def _assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------------------- no training
def _synthetic(tmp_path, iterations=(1, 2)):
    state = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "n": np.int32(7), "k": np.asarray([1, 2], np.uint32)}
    policy = {"params": {"w": state["w"][None]}, "batch_stats": {"mean": np.ones((1, 4), np.float32)}}
    for it in iterations:
        save_checkpoint(str(tmp_path), state, iteration=it, config_yaml="seed: 0\n", policy=policy, keep=5)
    return state


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_caught_and_the_previous_one_used(tmp_path, damage):
    state = _synthetic(tmp_path)
    newest = latest_checkpoint(str(tmp_path))
    assert newest.endswith("ckpt_00000002") and sorted(os.listdir(tmp_path / "checkpoints")) == [
        "ckpt_00000001",
        "ckpt_00000002",
    ]  # no temporary files left by the writes
    victim = _state_data_files(newest)[0]
    data = bytearray(open(victim, "rb").read())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    open(victim, "wb").write(bytes(data))
    with pytest.warns(RunWarning, match=r"checkpoint .*ckpt_00000002 is damaged \(.*\); falling back to ckpt_00000001"):
        ckpt = load_checkpoint(str(tmp_path))
    assert ckpt["iteration"] == 1 and ckpt["skipped"] == [newest]
    np.testing.assert_array_equal(ckpt["leaves"][2], state["w"])  # leaves in tree order: k, n, w
    with pytest.raises(CheckpointError, match="damaged|SHA-256"):
        load_checkpoint(newest)  # a checkpoint named explicitly has no fallback


def test_an_altered_manifest_and_no_intact_checkpoint_left(tmp_path):
    _synthetic(tmp_path, iterations=(3,))
    manifest = os.path.join(latest_checkpoint(str(tmp_path)), "manifest", "metadata")
    text = open(manifest).read()
    open(manifest, "w").write(text.replace('"iteration": 3', '"iteration": 9'))
    with pytest.warns(RunWarning, match="manifest's SHA-256 does not match"):
        with pytest.raises(CheckpointError, match="no intact checkpoint at .*ckpt_00000003 .*SHA-256"):
            load_checkpoint(str(tmp_path))
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(str(tmp_path / "elsewhere"))


def test_writer_keeps_the_newest(tmp_path):
    writer = CheckpointWriter(str(tmp_path), keep=2)
    for it in (1, 2, 3):
        writer.save({"x": np.full(3, it, np.float32)}, iteration=it, config_yaml="")
    writer.close()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["ckpt_00000002", "ckpt_00000003"]
    assert load_checkpoint(str(tmp_path))["leaves"][0].tolist() == [3.0, 3.0, 3.0]


# --------------------------------------------------------------------------------------- resume
def test_resume_of_a_copied_run_writes_into_the_copy(runs):
    copy = _copy(runs, "ck-copy")
    original = _digest(runs["half"])
    cfg = config_from_argv([f"checkpoint.resume={copy}"])  # the stored config names ck-half as its run_dir
    assert cfg.logger.run_dir == str(copy)
    resumed = train(cfg, setup=runs["t"].setup, fns=runs["t"].fns)
    assert resumed.run_dir == str(copy) and resumed.iteration == ITERS
    assert _digest(runs["half"]) == original  # the original run directory is byte-identical
    assert latest_checkpoint(str(copy)).endswith(f"ckpt_{ITERS:08d}")
    assert f"run_dir: {copy}\n" in open(copy / "config.yaml").read()
    _assert_same_state(runs["full"].runner, resumed.runner)  # and the resume is exact
    assert [r["iteration"] for r in _train_records(copy)] == [1, 2, 3, 4]


def test_truncated_latest_checkpoint_resumes_from_the_previous_one_exactly(runs):
    copy = _copy(runs, "ck-truncated")
    victim = _state_data_files(latest_checkpoint(str(copy)))[0]
    open(victim, "r+b").truncate(os.path.getsize(victim) // 2)
    cfg = load_config(runs["t"].args + [f"checkpoint.resume={copy}"])
    with pytest.warns(RunWarning) as record:
        resumed = train(cfg, setup=runs["t"].setup, fns=runs["t"].fns)
    messages = [str(w.message) for w in record]
    assert any("ckpt_00000002 is damaged" in m and "falling back to ckpt_00000001" in m for m in messages)
    assert any(m.startswith("resume: deleted the checkpoints past the restored") for m in messages)
    _assert_same_state(runs["full"].runner, resumed.runner)
    # iteration 2 was logged before the crash, dropped with the damaged checkpoint, and logged again once
    records = _train_records(copy)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    # eval records belong to their iteration: the same record, at its step
    evals = [r for r in read_metrics(str(copy)) if "eval/reward" in r]
    assert [(r["iteration"], r["step"]) for r in evals] == [(1, 64), (2, 128), (4, 256)]
    assert all("train/loss" in r for r in evals)


def test_a_record_logged_after_the_last_checkpoint_is_dropped_on_resume(runs):
    copy = _copy(runs, "ck-crash")
    shutil.rmtree(latest_checkpoint(str(copy)))  # a crash after iteration 2's record, before its checkpoint
    assert [r["iteration"] for r in _train_records(copy)] == [1, 2]
    resumed = train(
        load_config(runs["t"].args + [f"checkpoint.resume={copy}"]), setup=runs["t"].setup, fns=runs["t"].fns
    )
    assert resumed.iteration == ITERS
    assert [r["iteration"] for r in _train_records(copy)] == [1, 2, 3, 4]
    _assert_same_state(runs["full"].runner, resumed.runner)


def test_resume_with_changed_shapes_exits_2_before_writing(runs, capsys):
    copy = _copy(runs, "ck-shapes")
    before = _digest(copy)
    assert main([f"checkpoint.resume={copy}", "model.hidden_size=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: checkpoint.resume={copy}: ")
    assert (
        "state.train.params['BatchNormMLP_0']['TorchBatchNorm_0']['bias'] has shape (1, 16) float32, this config "
        "gives (1, 8) float32; shapes depend on env.num_envs, num_seeds, model.*" in err
    )
    assert _digest(copy) == before  # config.yaml and everything else untouched


def test_other_data_and_a_longer_schedule_are_reported(runs, tmp_path):
    copy = _copy(runs, "ck-other")
    other = tmp_path / "other.csv"
    sine_frame(600, seed=1).to_csv(other)
    cfg = load_config(
        runs["t"].args
        + [f"checkpoint.resume={copy}", f"env.data_path={other}", f"collector.total_frames={64 * 6}"]
        + ["collector.stop_at_iteration=3"]
    )
    setup = build_setup(cfg, frozen_features=load_features(copy / "features.json"))
    with pytest.warns(RunWarning) as record:
        train(cfg, setup=setup, fns=runs["t"].fns)
    messages = [str(w.message) for w in record]
    assert any(
        m.startswith("resume: this data (600 rows") and "is not the run's (600 rows" in m and "frozen feature" in m
        for m in messages
    ), messages
    assert any(
        "collector.total_frames changed from 256 to 384: the LR/clip schedule is rebuilt for 384 frames" in m
        for m in messages
    ), messages


def test_evaluate_warns_on_other_data(runs, tmp_path, monkeypatch):
    import train.evaluate as evaluate

    other = tmp_path / "other.csv"
    sine_frame(600, seed=2).to_csv(other)

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(evaluate, "make_episode_runner", stop)  # the check comes first; no episode compiled
    with pytest.warns(RunWarning, match=r"evaluate: this data \(600 rows .*\) is not the run's"):
        with pytest.raises(Stop):
            evaluate.evaluate_run(str(runs["half"]), [f"env.data_path={other}"])


def test_nan_in_the_batch_points_at_the_data(runs):
    good = load_checkpoint(str(runs["half"]))
    state = restore_state(runs["full"].runner, good)
    poisoned = state._replace(obs=state.obs * np.nan)
    bad = runs["t"].root / "ck-nan-obs"
    cfg = load_config(runs["t"].args)
    save_checkpoint(str(bad), poisoned, iteration=2, config_yaml=to_yaml(cfg))
    with pytest.raises(TrainingDiverged, match="observation or reward batch was already non-finite"):
        train(load_config(runs["t"].args + [f"checkpoint.resume={bad}"]), setup=runs["t"].setup, fns=runs["t"].fns)
    assert sorted(os.listdir(bad / "checkpoints")) == ["ckpt_00000002"]  # nothing written from the bad state
    last = read_metrics(str(bad))[-1]
    assert last["diverged"] and last["iteration"] == 3
    assert json.dumps(last)  # a valid record
