import json
import os

import pytest

from limit_tf import paths
from limit_tf.config import ConfigError, ExperimentConfig, check_tf_config


def _config(tmp_path, **changes):
    return ExperimentConfig(**{"workdir": str(tmp_path / "run"), **changes})


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(dataset="svhn"), "--dataset='svhn' is not allowed; allowed: mnist"),
        (dict(noise="gaussian"), "--noise='gaussian' is not allowed"),
        (dict(method="sgd"), "--method='sgd' is not allowed"),
        (dict(method="limit", predictor="student"), "--predictor='student' is not allowed with --method=limit"),
        (dict(predictor="student"), "--predictor='student' is not allowed: allowed: auto, gaussian"),
        (dict(architecture="vgg"), "--architecture='vgg'"),
        (dict(method="limit", q_architecture="vgg"), "--q_architecture='vgg'"),
        (dict(strategy="tpu"), "--strategy='tpu'"),
        (dict(noise_rate=1.0), r"--noise_rate=1.0 is not allowed: it must be in \[0, 1\)"),
        (dict(noise_rate=-0.1), "--noise_rate=-0.1"),
        (dict(noise_rate=float("nan")), "--noise_rate=nan"),
        (dict(noise="none", noise_rate=0.2), "--noise_rate=0.2 is not allowed with --noise=none"),
        (dict(noise="pair"), "--noise=pair is defined for cifar10 only"),
        (dict(beta=-1.0), "--beta=-1.0 is not allowed: it must be >= 0"),
        (dict(method="limit", beta=float("inf")), "--beta=inf is not allowed with --method=limit: it must be a finite"),
        (dict(sigma_q=-0.5), "--sigma_q=-0.5"),
        (dict(method="limit", sample=True, sigma_q=0.0), r"--sigma_q=0.0 is not allowed with --sample: it must be > 0"),
        (dict(method="ce_gn", noise_std=0.0), "--noise_std=0.0 is not allowed with --method=ce_gn: it must be > 0"),
        (dict(epochs=-1), "--epochs=-1 is not allowed: it must be an integer >= 1, or 0 for auto"),
        (dict(epochs=-3), "--epochs=-3"),
        (dict(patience=-2), "--patience=-2"),
        (dict(lr_schedule="linear"), "--lr_schedule='linear' is not allowed"),
        (dict(batch_size=-1), "--batch_size=-1 is not allowed: it must be an integer >= 0"),
        (dict(learning_rate=0.0), "--learning_rate=0.0 is not allowed with --method=ce: it must be > 0"),
        (dict(num_train_examples=0), "--num_train_examples=0"),
        (dict(warmup_epochs=5, epochs=5), "--warmup_epochs=5 is not allowed: it must be < --epochs=5"),
        (dict(method="fw"), "--init_from is required with --method=fw"),
        (dict(init_from="x"), "--init_from is not allowed with --method=ce"),
        (dict(gce_q=0.0, method="gce"), "--gce_q=0.0 is not allowed with --method=gce: it must be in"),
        (dict(gce_q=3.0), r"--gce_q=3.0 is not allowed: it must be in \[0, 1\]"),
        (dict(workdir=""), "--workdir is required"),
        (dict(devices=("/gpu:0",)), "--devices=/gpu:0 is not allowed with --strategy=default"),
    ],
)
def test_every_bad_setting_names_flag_and_value(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, **{"epochs": 10, **changes}).validate()


def test_unused_settings_may_be_zero(tmp_path):
    # A CE run does not read noise_std or sigma_q: 0 is fine for them.
    _config(tmp_path, noise_std=0.0, sigma_q=0.0, sample=True).validate()


def _finished_ce(path, **config):
    path.mkdir(parents=True)
    (path / "best.weights.h5").write_bytes(b"")
    (path / "config.json").write_text(json.dumps({"method": "ce", "dataset": "mnist", **config}))


def test_init_from_must_be_a_finished_ce_run_of_the_same_data_and_architecture(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no trained model"):
        paths.check(_config(tmp_path, method="limit", init_from=str(tmp_path / "empty")).validate())
    _finished_ce(tmp_path / "limit_run")
    (tmp_path / "limit_run" / "config.json").write_text(json.dumps({"method": "limit"}))
    with pytest.raises(ConfigError, match="is a 'limit' run"):
        paths.check(_config(tmp_path, method="fw", init_from=str(tmp_path / "limit_run")).validate())
    with pytest.raises(ConfigError, match="is not a directory"):
        paths.check(_config(tmp_path, method="limit", init_from=str(tmp_path / "nope")).validate())
    _finished_ce(tmp_path / "mlp_ce", architecture="mlp")
    with pytest.raises(ConfigError, match="architecture 'mlp'; this run's architecture is 'mnist_cnn'"):
        paths.check(_config(tmp_path, method="dmi", init_from=str(tmp_path / "mlp_ce")).validate())
    _finished_ce(tmp_path / "fashion_ce", dataset="fashion_mnist")
    with pytest.raises(ConfigError, match="dataset 'fashion_mnist'"):
        paths.check(_config(tmp_path, method="dmi", init_from=str(tmp_path / "fashion_ce")).validate())
    _finished_ce(tmp_path / "good_ce")
    paths.check(_config(tmp_path, method="dmi", init_from=str(tmp_path / "good_ce")).validate())
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "best.weights.h5").write_bytes(b"")
    (tmp_path / "torn" / "config.json").write_text('{"method": "c')
    with pytest.raises(ConfigError, match=r"torn/config.json is corrupt"):
        paths.check(_config(tmp_path, method="dmi", init_from=str(tmp_path / "torn")).validate())


def test_validation_is_pure_and_the_paths_are_checked_where_runs_are_opened(tmp_path):
    missing = ExperimentConfig(workdir=str(tmp_path / "w"), method="dmi", init_from=str(tmp_path / "nope"))
    assert missing.validate() is missing  # reads no file
    with pytest.raises(ConfigError, match="is not a directory"):
        paths.check(missing)
    paths.check(missing, init_from=False)  # a sweep, before its CE runs exist


def test_workdir_that_cannot_be_a_directory_is_refused_before_anything(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        paths.check(ExperimentConfig(workdir=str(tmp_path / "afile")).validate())
    with pytest.raises(ConfigError, match="lies inside .*afile.*, which is a file"):
        paths.check(ExperimentConfig(workdir=str(tmp_path / "afile" / "run")).validate())
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root may write anyway
            with pytest.raises(ConfigError, match="read-only"):
                paths.check(ExperimentConfig(workdir=str(locked / "run")).validate())
    finally:
        locked.chmod(0o700)


def test_experiment_identity_ignores_what_does_not_change_results(tmp_path):
    base = _config(tmp_path, method="limit", predictor="laplace", beta=10.0, epochs=5)
    same = [
        base.replace(workdir=str(tmp_path / "run") + "/"),
        base.replace(workdir=os.path.relpath(tmp_path / "run")),
        base.replace(data_dir="/elsewhere", data_source="local", verify_data=False),
        base.replace(track_test_accuracy=True, deterministic=True, jit_compile=True),
        base.replace(gce_q=0.5, noise_std=0.2, soft_lambda=0.1),  # not read by LIMIT
        base.replace(sigma_q=0.3),  # not read without --sample
    ]
    for other in same:
        assert base.differences(other) == []
    assert base.differences(base.replace(epochs=6)) == ["epochs"]
    assert base.differences(base.replace(beta=1.0, seed=2)) == ["beta", "seed"]
    assert base.differences(base.replace(sample=True, sigma_q=0.1)) == ["sample", "sigma_q"]
    assert base.differences(base.replace(architecture="mnist_cnn")) == []  # the dataset's default, spelled out
    ce = _config(tmp_path, epochs=5)
    assert ce.differences(ce.replace(beta=3.0, q_architecture="same")) == []


def test_init_from_paths_compare_resolved(tmp_path):
    config = _config(tmp_path, method="limit", init_from=str(tmp_path / "ce"))
    assert config.differences(config.replace(init_from=str(tmp_path / "ce") + "/")) == []
    assert config.differences(config.replace(init_from=str(tmp_path / "other"))) == ["init_from"]


def test_config_round_trips_through_json(tmp_path):
    config = _config(tmp_path, method="limit", beta=3.0, devices=("/cpu:0",))
    assert ExperimentConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ConfigError, match="unknown setting 'betta'"):
        ExperimentConfig.from_dict({"betta": 1})


def test_config_is_frozen(tmp_path):
    with pytest.raises(AttributeError):
        _config(tmp_path).beta = 2.0


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
