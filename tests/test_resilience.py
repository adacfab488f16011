"""Kills at random instants, some inside a checkpoint write: every run resumes to identical results."""

import os
import random
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from limit_tf import workdir
from tests.conftest import REPO, write_fake_mnist

pytestmark = pytest.mark.slow

ARGS = [
    "--architecture=mlp",
    "--method=limit",
    "--predictor=laplace",
    "--beta=1",
    "--sample",
    "--sigma_q=0.1",
    "--noise_rate=0.5",
    "--num_train_examples=300",
    "--batch_size=32",
    "--epochs=50",
    "--patience=50",
    "--deterministic",
    "--noverify_data",
]


def _start(run_dir, data_dir, log, pause_dir=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("LIMIT_TEST_PAUSE_IN_SAVE", None)
    if pause_dir is not None:
        env["LIMIT_TEST_PAUSE_IN_SAVE"] = str(pause_dir)
    command = [sys.executable, "-m", "tests.kill_harness", f"--workdir={run_dir}", f"--data_dir={data_dir}", *ARGS]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_ten_kills_four_inside_a_checkpoint_write_resume_to_identical_results(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=600, n_test=100, learnable=True)
    log = open(tmp_path / "log.txt", "w")  # noqa: SIM115 - shared by every process of the test
    reference = _start(tmp_path / "reference", tmp_path / "data", log)
    assert reference.wait(timeout=300) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    run = workdir.RunDir(tmp_path / "run")
    rng = random.Random(0)
    plan = ["save"] * 4 + ["random"] * 6
    rng.shuffle(plan)
    kills = {"save": 0, "random": 0}
    attempts = 0
    while sum(kills.values()) < len(plan) and attempts < 30 and not run.finished:
        attempts += 1
        kind = plan[sum(kills.values())]
        pause_dir = tmp_path / f"pause{attempts}"
        pause_dir.mkdir()
        proc = _start(run.path, tmp_path / "data", log, pause_dir if kind == "save" else None)
        deadline = time.time() + 120
        if kind == "save":
            while not list(pause_dir.iterdir()) and proc.poll() is None and time.time() < deadline:
                time.sleep(0.02)
        else:
            time.sleep(rng.uniform(3.0, 8.0))  # start-up takes ~4 s: some kills land before training, most during
        if proc.poll() is None:
            proc.kill()
            kills[kind] += 1
        proc.wait()
    assert kills == {"save": 4, "random": 6}, (kills, attempts)
    final = _start(run.path, tmp_path / "data", log)
    assert final.wait(timeout=300) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    log.close()
    expected, got = workdir.RunDir(tmp_path / "reference"), run
    for key in ("test_accuracy", "best_val_accuracy", "best_epoch", "epochs_run"):
        assert got.results()[key] == expected.results()[key], key
    assert got.metrics() == expected.metrics()  # every epoch once, with identical values
    weights = [keras.models.load_model(r.file("best.keras")).get_weights() for r in (expected, got)]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def _runner(run_dir, data_dir, env=None):
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    command = [sys.executable, "-m", "tests.kill_harness", f"--workdir={run_dir}", f"--data_dir={data_dir}", *ARGS]
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,  # pytest-xdist's workers ignore SIGINT, and children inherit that
    )


def _default_sigint():
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_says_how_to_resume_and_the_rerun_finishes(tmp_path):
    import signal

    write_fake_mnist(tmp_path / "data", n_train=600, n_test=100, learnable=True)
    run = workdir.RunDir(tmp_path / "run")
    proc = _runner(run.path, tmp_path / "data")
    deadline = time.time() + 240
    while len(run.metrics()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == "interrupted; rerun the same command to resume."
    assert "Traceback" not in err
    again = _runner(run.path, tmp_path / "data")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0 and run.finished, err[-3000:]
    assert "resuming" in err


def test_a_full_disk_is_one_line_leaves_no_temporary_and_the_rerun_resumes(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=600, n_test=100, learnable=True)
    run = workdir.RunDir(tmp_path / "run")
    proc = _runner(run.path, tmp_path / "data", env={"LIMIT_TEST_DISK_FULL_AT": "3"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cannot write") and "no space left on device" in last and str(run.path) in last
    assert "Traceback" not in err
    assert not list(run.checkpoint_dir.glob("*_temp*"))
    again = _runner(run.path, tmp_path / "data")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0 and run.finished, err[-3000:]
