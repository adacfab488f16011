import json
import os
import subprocess
import sys

import pytest

from limit_tf.config import ConfigError, ExperimentConfig
from tests.conftest import REPO, write_fake_mnist


def _config(tmp_path, **changes):
    return ExperimentConfig(**{"workdir": str(tmp_path / "run"), **changes})


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(dataset="svhn"), "--dataset='svhn' is not allowed; allowed: mnist"),
        (dict(noise="gaussian"), "--noise='gaussian' is not allowed"),
        (dict(method="sgd"), "--method='sgd' is not allowed"),
        (dict(predictor="student"), "--predictor='student'"),
        (dict(architecture="vgg"), "--architecture='vgg'"),
        (dict(strategy="tpu"), "--strategy='tpu'"),
        (dict(noise_rate=1.0), r"--noise_rate=1.0 is not allowed: it must be in \[0, 1\)"),
        (dict(noise_rate=-0.1), "--noise_rate=-0.1"),
        (dict(noise="none", noise_rate=0.2), "--noise_rate=0.2 is not allowed with --noise=none"),
        (dict(noise="pair"), "--noise=pair is defined for cifar10 only"),
        (dict(beta=-1.0), "--beta=-1.0 is not allowed: it must be a finite number >= 0"),
        (dict(sigma_q=-0.5), "--sigma_q=-0.5"),
        (dict(sample=True, sigma_q=0.0), "--sigma_q=0.0 is not allowed with --sample"),
        (dict(method="ce_gn"), "--noise_std=0.0 is not allowed with --method=ce_gn"),
        (dict(epochs=0), "--epochs=0 is not allowed: it must be an integer >= 1"),
        (dict(epochs=-3), "--epochs=-3"),
        (dict(patience=0), "--patience=0"),
        (dict(batch_size=0), "--batch_size=0"),
        (dict(learning_rate=0.0), "--learning_rate=0.0"),
        (dict(num_train_examples=0), "--num_train_examples=0"),
        (dict(warmup_epochs=5, epochs=5), "--warmup_epochs=5 is not allowed: it must be < --epochs=5"),
        (dict(method="fw"), "--init_from is required with --method=fw"),
        (dict(gce_q=0.0), "--gce_q=0.0"),
        (dict(workdir=""), "--workdir is required"),
    ],
)
def test_every_bad_setting_names_flag_and_value(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, **{"epochs": 10, **changes}).validate()


def test_init_from_must_hold_a_model(tmp_path):
    (tmp_path / "ce").mkdir()
    with pytest.raises(ConfigError, match="holds no trained model"):
        _config(tmp_path, method="limit", init_from=str(tmp_path / "ce")).validate()
    (tmp_path / "ce" / "best.weights.h5").write_bytes(b"")
    (tmp_path / "ce" / "config.json").write_text(json.dumps({"method": "limit"}))
    with pytest.raises(ConfigError, match="is a 'limit' run"):
        _config(tmp_path, method="fw", init_from=str(tmp_path / "ce")).validate()
    with pytest.raises(ConfigError, match="is not a directory"):
        _config(tmp_path, method="limit", init_from=str(tmp_path / "nope")).validate()


def test_config_round_trips_through_json(tmp_path):
    config = _config(tmp_path, method="limit", beta=3.0, devices=("/cpu:0",))
    assert ExperimentConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ConfigError, match="unknown setting 'betta'"):
        ExperimentConfig.from_dict({"betta": 1})


def test_config_is_frozen(tmp_path):
    with pytest.raises(AttributeError):
        _config(tmp_path).beta = 2.0


def _main(args, env_extra=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "limit_tf.main", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )


def test_cli_bad_flags_exit_2_and_write_nothing(tmp_path):
    workdir = tmp_path / "run"
    result = _main(["--noise_rate=1.5", f"--workdir={workdir}"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: --noise_rate=1.5 is not allowed: it must be in [0, 1)."
    assert not workdir.exists()
    # Data not found offline: same contract.
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _main([f"--data_dir={empty}", f"--workdir={workdir}", "--epochs=1"], {"LIMIT_DATA_DIR": ""})
    assert result.returncode == 2 and "not found offline" in result.stderr
    assert not workdir.exists()


def test_cli_runs_tiny_experiment(tmp_path):
    write_fake_mnist(tmp_path / "data")
    workdir = tmp_path / "run"
    args = [
        f"--data_dir={tmp_path / 'data'}",
        f"--workdir={workdir}",
        "--architecture=mlp",
        "--epochs=2",
        "--batch_size=64",
    ]
    args += ["--method=limit", "--predictor=laplace", "--beta=1", "--noise_rate=0.5", "--num_train_examples=200"]
    result = _main(args)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["epochs_run"] == 2 and 0.0 <= summary["test_accuracy"] <= 1.0
    assert "epoch 2/2" in result.stderr and "ETA" in result.stderr  # progress lines
