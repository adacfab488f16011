"""Multi-worker training: two worker processes on 127.0.0.1, and the loop behind it.

``MultiWorkerMirroredStrategy`` must be created before TensorFlow runs any op,
so each worker is a fresh ``python -m limit_tf.main --strategy=multi_worker``
process with its own ``TF_CONFIG``. Every process is bounded in time and
killed when a test ends, passed or not.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from limit_tf import train, workdir
from tests.conftest import REPO, tiny_config, write_fake_mnist

# Every test here starts worker processes and takes tens of seconds.
pytestmark = pytest.mark.slow

WORKER_TIMEOUT_S = 150


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _flags(config):
    flags = []
    for key, value in json.loads(config.to_json()).items():
        if value is None or key in ("devices", "strategy"):
            continue
        if isinstance(value, bool):
            flags.append(f"--{key}" if value else f"--no{key}")
        else:
            flags.append(f"--{key}={value}")
    return flags


class Cluster:
    """Worker processes of one multi-worker run; all killed on exit."""

    def __init__(self, config, ports, log_dir: Path):
        self.config = config
        self.ports = ports
        self.log_dir = log_dir
        self.procs = []

    def start(self, tag: str):
        workers = [f"127.0.0.1:{p}" for p in self.ports]
        for index in range(len(workers)):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            cmd = [sys.executable, "-m", "limit_tf.main", "--strategy=multi_worker", *_flags(self.config)]
            with open(self.log_dir / f"{tag}_worker{index}.log", "w") as log:
                self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
        return self

    def wait(self, timeout=WORKER_TIMEOUT_S):
        deadline = time.time() + timeout
        for proc in self.procs:
            proc.wait(timeout=max(deadline - time.time(), 1))
        return [proc.returncode for proc in self.procs]

    def log(self, tag, index):
        return (self.log_dir / f"{tag}_worker{index}.log").read_text()

    def kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def _best_weights(run_dir):
    return keras.models.load_model(Path(run_dir) / "best.keras").get_weights()


def _assert_same_run(workdir_a, workdir_b, *, exact):
    """Equal results; equal weights when ``exact`` (two runs of the same cluster), else close curves.

    One process and two workers sum the gradients in another order; Adam turns
    those rounding differences into lr-sized steps on near-zero gradients, so
    their weights differ by up to a few lr while the curves agree.
    """
    a, b = workdir.RunDir(workdir_a).results(), workdir.RunDir(workdir_b).results()
    for key in ("best_epoch", "epochs_run"):
        assert a[key] == b[key], key
    for key in ("test_accuracy", "best_val_accuracy"):
        assert a[key] == pytest.approx(b[key], abs=0 if exact else 0.02), key
    rows_a, rows_b = workdir.RunDir(workdir_a).metrics(), workdir.RunDir(workdir_b).metrics()
    assert [r["epoch"] for r in rows_a] == [r["epoch"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("loss", "q_loss", "val_loss"):
            assert ra[key] == pytest.approx(rb[key], rel=0 if exact else 2e-3), key
    if exact:
        for x, y in zip(_best_weights(workdir_a), _best_weights(workdir_b), strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.fixture
def data_dir(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=600, n_test=200, learnable=True)
    return tmp_path / "data"


def _config(workdir, data_dir, **changes):
    settings = dict(method="limit", predictor="laplace", beta=3.0, deterministic=True, epochs=3, patience=10)
    return tiny_config(workdir, data_dir, **{**settings, **changes})


def test_two_workers_equal_one_process(tmp_path, data_dir):
    config = _config(tmp_path / "multi", data_dir)
    with Cluster(config, _free_ports(2), tmp_path) as cluster:
        codes = cluster.start("run").wait()
        assert codes == [0, 0], cluster.log("run", 0)[-3000:] + cluster.log("run", 1)[-3000:]
    single = config.replace(workdir=str(tmp_path / "single"))
    train.run_experiment(single)
    _assert_same_run(tmp_path / "multi", tmp_path / "single", exact=False)
    # The chief wrote the work dir; the other worker left nothing behind.
    run = workdir.RunDir(tmp_path / "multi")
    assert [int(r["epoch"]) for r in run.metrics()] == [0, 1, 2]
    assert not run.file("workers").exists() and not run.checkpoint_dir.exists()


def test_killed_worker_then_restart_resumes(tmp_path, data_dir):
    """SIGKILL one worker mid-run, stop the chief, restart both: the run resumes from
    the last checkpointed epoch and ends exactly as an uninterrupted two-worker run."""
    epochs = 8
    config = _config(tmp_path / "multi", data_dir, epochs=epochs, patience=epochs)
    ports = _free_ports(2)
    checkpoints = workdir.RunDir(tmp_path / "multi").checkpoint_dir
    with Cluster(config, ports, tmp_path) as cluster:
        cluster.start("first")
        deadline = time.time() + WORKER_TIMEOUT_S
        while not list(checkpoints.glob("epoch-3.index")):
            assert time.time() < deadline, cluster.log("first", 0)[-3000:]
            assert all(p.poll() is None for p in cluster.procs), cluster.log("first", 0)[-3000:]
            time.sleep(0.05)
        os.kill(cluster.procs[1].pid, signal.SIGKILL)  # one worker dies...
        time.sleep(1.0)
        cluster.kill()  # ...and the chief, stuck in a collective, is stopped too
    assert not (tmp_path / "multi" / "results.json").exists()
    with Cluster(config, ports, tmp_path) as cluster:
        codes = cluster.start("second").wait()
        log = cluster.log("second", 0)
        assert codes == [0, 0], log[-3000:] + cluster.log("second", 1)[-3000:]
    resumed = [line for line in log.splitlines() if "resuming" in line]
    assert resumed, log[-3000:]
    first_epoch = int(resumed[0].split(" at epoch ")[1].split()[0])
    assert 4 <= first_epoch < epochs  # it did not start over
    straight = config.replace(workdir=str(tmp_path / "straight"))
    with Cluster(straight, _free_ports(2), tmp_path) as cluster:
        assert cluster.start("straight").wait() == [0, 0], cluster.log("straight", 0)[-3000:]
    _assert_same_run(tmp_path / "multi", tmp_path / "straight", exact=True)


def test_a_worker_whose_peer_never_comes_gives_up_with_one_line(tmp_path, data_dir):
    config = _config(tmp_path / "alone", data_dir).replace(cluster_timeout=10)
    with Cluster(config, _free_ports(2), tmp_path) as cluster:
        cluster.procs = []
        cluster.start("alone")
        lonely, absent = cluster.procs
        absent.kill()  # worker 1 never joins
        absent.wait()
        start = time.time()
        lonely.wait(timeout=90)
        elapsed = time.time() - start
        log = cluster.log("alone", 0)
    assert lonely.returncode != 0 and elapsed < 60
    assert "could not reach every worker of $TF_CONFIG" in log.strip().splitlines()[-1], log[-2000:]
    assert not (tmp_path / "alone").exists()  # nothing written


def test_sigterm_stops_a_worker_and_its_peer_says_so_in_one_line(tmp_path, data_dir):
    config = _config(tmp_path / "multi", data_dir, epochs=30, patience=30)
    checkpoints = workdir.RunDir(tmp_path / "multi").checkpoint_dir
    with Cluster(config, _free_ports(2), tmp_path) as cluster:
        cluster.start("term")
        deadline = time.time() + WORKER_TIMEOUT_S
        while not list(checkpoints.glob("epoch-1.index")):
            assert time.time() < deadline and all(p.poll() is None for p in cluster.procs), cluster.log("term", 0)[
                -3000:
            ]
            time.sleep(0.05)
        chief, other = cluster.procs
        chief.send_signal(signal.SIGTERM)  # TensorFlow's coordination service would swallow it
        chief.wait(timeout=20)
        other.wait(timeout=60)
        log = cluster.log("term", 1)
    assert chief.returncode == -signal.SIGTERM
    assert other.returncode == 1
    assert "another worker stopped" in log.strip().splitlines()[-1] and "resume" in log, log[-2000:]
