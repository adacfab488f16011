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

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from limit_tf import LimitModel, distribute, loop, train
from limit_tf.config import ConfigError, check_tf_config
from tests.conftest import REPO, tiny_config, write_fake_mnist

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


def _weights(path):
    arrays = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def _assert_same_run(workdir_a, workdir_b, atol=1e-4):
    a = json.loads((Path(workdir_a) / "results.json").read_text())
    b = json.loads((Path(workdir_b) / "results.json").read_text())
    for key in ("best_epoch", "epochs_run"):
        assert a[key] == b[key], key
    for key in ("test_accuracy", "best_val_accuracy"):
        assert a[key] == pytest.approx(b[key], abs=1e-3), key
    wa, wb = _weights(Path(workdir_a) / "best.weights.h5"), _weights(Path(workdir_b) / "best.weights.h5")
    assert len(wa) == len(wb) > 0
    worst = max(float(np.max(np.abs(x - y))) for x, y in zip(wa, wb, strict=True))
    assert worst < atol, worst


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
    _assert_same_run(tmp_path / "multi", tmp_path / "single")
    # The chief wrote the work dir; the other worker left nothing behind.
    assert (tmp_path / "multi" / "metrics.csv").is_file()
    assert not (tmp_path / "multi" / "workers").exists()
    assert not (tmp_path / "multi" / "backup").exists()
    rows = train.read_metrics(tmp_path / "multi")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]


@pytest.mark.slow
def test_killed_worker_then_restart_resumes(tmp_path, data_dir):
    """SIGKILL one worker mid-run, stop the chief, restart both: the run resumes from
    the last checkpointed epoch and ends exactly as an uninterrupted two-worker run."""
    epochs = 8
    config = _config(tmp_path / "multi", data_dir, epochs=epochs, patience=epochs)
    ports = _free_ports(2)
    backup = tmp_path / "multi" / "backup"
    with Cluster(config, ports, tmp_path) as cluster:
        cluster.start("first")
        deadline = time.time() + WORKER_TIMEOUT_S
        while not list(backup.glob("epoch-3.index")):
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
    _assert_same_run(tmp_path / "multi", tmp_path / "straight", atol=1e-6)


# --------------------------------------------------------------------------
# The loop itself, in process, under a 2-replica MirroredStrategy.


def _net():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def _limit(weights=None):
    model = LimitModel(_net(), _net(), predictor="gaussian", beta=2.0, warmup_epochs=1)
    model.compile(keras.optimizers.Adam(1e-2))
    if weights is not None:
        model.set_weights(weights)
    return model


def _data(rng, n=96):
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = rng.integers(0, 4, n).astype(np.int32)
    return x, y


def test_trainer_two_replicas_equal_one_device(rng, tmp_path):
    x, y = _data(rng, n=97)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(30)  # 30, 30, 30, 7: the 7 split 3 + 4
    reference = _limit()
    weights = reference.get_weights()
    one = loop.DistributedTrainer(reference, tf.distribute.get_strategy())
    history_one = one.fit(ds.repeat(), epochs=3, steps_per_epoch=4, validation_data=ds)
    strategy = distribute.get_strategy("mirrored", ("/cpu:0", "/cpu:1"))
    with strategy.scope():
        model = _limit(weights)
    two = loop.DistributedTrainer(model, strategy)
    history_two = two.fit(ds.repeat(), epochs=3, steps_per_epoch=4, validation_data=ds, backup_dir=tmp_path / "b")
    for a, b in zip(reference.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert history_one.keys() == history_two.keys()
    assert "val_accuracy" in history_two and "val_q_loss" not in history_two  # q metrics are training-only
    for key in history_one:  # global metrics, not one replica's
        np.testing.assert_allclose(history_one[key], history_two[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert sorted(p.name for p in (tmp_path / "b").glob("*.index")) == ["epoch-2.index", "epoch-3.index"]


def test_trainer_restore_resumes_bit_identically(rng, tmp_path):
    x, y = _data(rng)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    straight = _limit()
    weights = straight.get_weights()
    loop.DistributedTrainer(straight).fit(ds.repeat(), epochs=4, steps_per_epoch=3)
    first = _limit(weights)
    loop.DistributedTrainer(first).fit(ds.repeat(), epochs=2, steps_per_epoch=3, backup_dir=tmp_path)
    resumed = _limit()  # fresh weights: everything must come from the checkpoint
    trainer = loop.DistributedTrainer(resumed)
    start = trainer.restore(tmp_path)
    assert start == 2
    trainer.fit(ds.repeat(), epochs=4, steps_per_epoch=3, initial_epoch=start, backup_dir=tmp_path)
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.optimizer.iterations) == int(straight.optimizer.iterations) == 4 * 3 - 3  # warm-up epoch


def test_trainer_warmup_freezes_the_classifier_only(rng):
    x, y = _data(rng)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model = _limit()
    clf, q = model.classifier.get_weights(), model.predictor_network.get_weights()
    loop.DistributedTrainer(model).fit(ds.repeat(), epochs=1, steps_per_epoch=3)  # the warm-up epoch
    for a, b in zip(clf, model.classifier.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(q, model.predictor_network.get_weights(), strict=True))
    assert not model._classifier_frozen  # switched back after training


def test_trainer_stops_on_chief_request_and_reraises_callback_errors(rng):
    x, y = _data(rng)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)

    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch >= 1

    history = loop.DistributedTrainer(_limit()).fit(
        ds.repeat(), epochs=10, steps_per_epoch=2, callbacks=[StopAfterTwo()]
    )
    assert len(history["loss"]) == 2

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.DistributedTrainer(_limit()).fit(ds.repeat(), epochs=3, steps_per_epoch=1, callbacks=[Boom()])


def test_tf_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"TF_CONFIG.*not set"):
        check_tf_config({})
    with pytest.raises(ConfigError, match="not valid JSON"):
        check_tf_config({"TF_CONFIG": "{cluster"})
    with pytest.raises(ConfigError, match="index 2 is not in its cluster"):
        check_tf_config(
            {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}})}
        )
    good = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    assert check_tf_config({"TF_CONFIG": json.dumps(good)}) == good


def test_runner_rejects_multi_worker_without_tf_config(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "limit_tf.main", "--strategy=multi_worker", f"--workdir={tmp_path / 'w'}"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "TF_CONFIG" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "w").exists()
