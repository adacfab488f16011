import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import pytest

from limit_tf import train
from limit_tf.config import ConfigError
from tests.conftest import REPO, tiny_config, write_fake_mnist
from tuner import hypermodel as hm
from tuner import search


@pytest.fixture
def learnable_data(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=500, n_test=100, learnable=True)
    return str(tmp_path / "data")


def _base(tmp_path, data, **changes):
    settings = dict(method="ce", noise_rate=0.2, epochs=3, patience=3, batch_size=50)
    return tiny_config(tmp_path / "search" / "best_run", data, **{**settings, **changes})


class CountTrainings(keras.callbacks.Callback):
    count = 0

    def on_train_begin(self, logs=None):
        CountTrainings.count += 1


def test_search_picks_the_known_better_value_and_writes_reports(tmp_path, learnable_data, caplog):
    base = _base(tmp_path, learnable_data)
    space = hm.SearchSpace.for_method("ce", grids={"learning_rate": [1e-7, 3e-3]})  # 1e-7 cannot learn in 3 epochs
    with caplog.at_level("INFO"):
        summary = search.run_search(base, space, oracle="grid", max_trials=5, executions_per_trial=1, retrain=True)
    assert summary["num_trials"] == 2
    assert summary["best"]["hyperparameters"]["learning_rate"] == pytest.approx(3e-3)
    assert summary["retrained"]["test_accuracy"] > 0.5
    out = tmp_path / "search"
    assert json.loads((out / "best_hyperparameters.json").read_text())["hyperparameters"][
        "learning_rate"
    ] == pytest.approx(3e-3)
    assert (out / "trials.csv").read_text().count("COMPLETED") == 2
    assert (out / "best_run" / "results.json").is_file()
    lines = [r.getMessage() for r in caplog.records if "done (" in r.getMessage()]
    assert len(lines) == 2 and "learning_rate=" in lines[0] and "val_accuracy" in lines[0] and "ETA" in lines[0]


def test_the_search_space_comes_from_the_method_table(tmp_path, learnable_data):
    import keras_tuner as kt

    base = _base(tmp_path, learnable_data, method="limit")
    dataset = train.load_data(base)
    space = hm.SearchSpace.for_method("limit", grids={"predictor": ["gaussian", "laplace"], "sample": [False, True]})
    assert space.values["beta"] == [0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]  # the paper's grid by default
    model = hm.MethodHyperModel(base, dataset, space)
    hp = kt.HyperParameters()
    config = model.config_for(hp)
    assert set(hp.values) >= {"beta", "predictor", "sample"} and config.method == "limit"
    assert "sigma_q" not in hp.values  # inactive without "+S"
    hp.values["sample"] = True
    assert model.config_for(hp).sigma_q in (0.01, 0.03, 0.1, 0.3)
    # CE + GN is tunable: its noise std has the authors' grid.
    assert hm.SearchSpace.for_method("ce_gn").values == {"noise_std": [0.01, 0.03, 0.1, 0.3]}
    with pytest.raises(ConfigError, match="nothing to search for --method=ce"):
        hm.SearchSpace.for_method("ce")
    with pytest.raises(ConfigError, match="has no hyperparameter 'beta'"):
        hm.SearchSpace.for_method("ce", grids={"beta": [1.0]})
    with pytest.raises(ConfigError, match="beta range .0, 1. is not allowed"):
        hm.SearchSpace.for_method("limit", ranges={"beta": (0.0, 1.0)})
    with pytest.raises(ConfigError, match="sigma_q=0.0 is not allowed with --method=limit"):
        hm.SearchSpace.for_method("limit", grids={"sigma_q": [0.0, 0.1]})


def test_another_search_in_the_same_work_dir_is_refused(tmp_path, learnable_data):
    base = _base(tmp_path, learnable_data, epochs=1)
    space = hm.SearchSpace.for_method("ce", grids={"learning_rate": [1e-3]})
    search.run_search(base, space, oracle="grid", max_trials=1, executions_per_trial=1, retrain=False)
    other = hm.SearchSpace.for_method("ce", grids={"learning_rate": [1e-2]})
    with pytest.raises(ConfigError, match="holds a different search .differs in: values.learning_rate"):
        search.run_search(base, other, oracle="grid", max_trials=1, executions_per_trial=1, retrain=False)
    with pytest.raises(ConfigError, match="differs in: experiment.method"):
        search.run_search(
            base.replace(method="mae"), space, oracle="grid", max_trials=1, executions_per_trial=1, retrain=False
        )


@pytest.mark.slow
def test_resume_after_kill_does_not_repeat_finished_trials(tmp_path, learnable_data):
    workdir = tmp_path / "w"
    args = [
        f"--workdir={workdir}",
        f"--data_dir={learnable_data}",
        "--architecture=mlp",
        "--method=limit",
        "--num_train_examples=200",
        "--noise_rate=0.2",
        "--betas=0,1,10",
        "--epochs=1",
        "--noverify_data",
        "--batch_size=50",
        "--oracle=grid",
        "--retrain=false",
    ]
    trials = workdir / "kt" / "search"

    def completed():
        return [p for p in sorted(trials.glob("trial_*/trial.json")) if "COMPLETED" in p.read_text()]

    proc = _cli(args)
    try:
        deadline = time.time() + 200
        while time.time() < deadline and not completed():
            time.sleep(0.2)
        assert completed(), "the first trial did not finish in time"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    first_trial = completed()[0]
    finished = first_trial.read_text()
    proc = _cli(args)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    assert first_trial.read_text() == finished  # trial 0 was not run again
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["num_trials"] == 3
    assert (workdir / "trials.csv").read_text().count("COMPLETED") == 3


def test_restart_with_a_larger_budget_extends_the_search(tmp_path, learnable_data):
    base = _base(tmp_path, learnable_data, method="limit", epochs=1)
    space = hm.SearchSpace.for_method("limit", grids={"beta": [0.0, 1.0, 10.0]})
    CountTrainings.count = 0
    assert (
        search.run_search(
            base,
            space,
            oracle="grid",
            max_trials=2,
            executions_per_trial=1,
            retrain=False,
            callbacks=[CountTrainings()],
        )["num_trials"]
        == 2
    )
    assert CountTrainings.count == 2
    CountTrainings.count = 0
    keras.backend.clear_session()
    assert (
        search.run_search(
            base,
            space,
            oracle="grid",
            max_trials=3,
            executions_per_trial=1,
            retrain=False,
            callbacks=[CountTrainings()],
        )["num_trials"]
        == 3
    )
    assert CountTrainings.count == 1  # only the new trial trained


def _cli(args, env=None, timeout=240):
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "tuner.search", *args],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--oracle=annealing", "--oracle='annealing' is not allowed"),
        ("--max_trials=0", "--max_trials=0 is not allowed"),
        ("--noise_rate=1.5", "--noise_rate=1.5 is not allowed"),
        ("--betas=a,b", "--betas: 'a' is not a float value."),
        ("--predictors=student", "--predictors: 'student' is not allowed: allowed: gaussian, laplace, ce."),
        ("--method=ce", "nothing to search for --method=ce"),
        ("--strategy=multi_worker", "--strategy=multi_worker is not supported by the tuner"),
    ],
)
def test_bad_flags(tmp_path, flag, message):
    proc = _cli([f"--workdir={tmp_path / 'w'}", flag])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and message in err.strip().splitlines()[-1]
    assert not (tmp_path / "w").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_chief_and_worker(tmp_path, learnable_data):
    port = str(_free_port())
    args = [
        f"--workdir={tmp_path / 'w'}",
        f"--data_dir={learnable_data}",
        "--architecture=mlp",
        "--method=ce",
        "--num_train_examples=200",
        "--noise_rate=0.2",
        "--learning_rates=0.0000001,0.003",
        "--epochs=2",
        "--noverify_data",
        "--patience=2",
        "--batch_size=50",
        "--oracle=grid",
        "--retrain=false",
    ]
    env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    chief = _cli(args, {**env, "KERASTUNER_TUNER_ID": "chief"})
    worker = _cli(args, {**env, "KERASTUNER_TUNER_ID": "tuner0"})
    try:
        _, worker_err = worker.communicate(timeout=240)
        chief_out, chief_err = chief.communicate(timeout=120)
    finally:
        for proc in (chief, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert worker.returncode == 0, worker_err[-2000:]
    assert chief.returncode == 0, chief_err[-2000:]
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["num_trials"] == 2
    assert summary["best"]["hyperparameters"]["learning_rate"] == pytest.approx(0.003)


def test_a_search_on_your_own_image_folder(tmp_path):
    """The tuner takes ``folder:`` data as the runner does: labels as given, no test set."""
    import numpy as np
    from PIL import Image

    from limit_tf.config import ExperimentConfig

    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog")):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(rng.integers(0, 80, (8, 8), dtype=np.uint8) + 120 * k).save(
                tmp_path / "imgs" / name / f"{i}.png"
            )
    base = ExperimentConfig(
        workdir=str(tmp_path / "search" / "best_run"),
        dataset=f"folder:{tmp_path / 'imgs'}",
        architecture="mlp",
        method="ce",
        epochs=2,
        patience=2,
        batch_size=16,
    )
    space = hm.SearchSpace.for_method("ce", grids={"learning_rate": [1e-3, 3e-3]})
    summary = search.run_search(base, space, oracle="grid", max_trials=2, executions_per_trial=1, retrain=True)
    assert summary["num_trials"] == 2 and summary["retrained"]["test_accuracy"] is None  # no --test_data
    results = json.loads((tmp_path / "search" / "best_run" / "results.json").read_text())
    assert results["class_names"] == ["cat", "dog"] and results["best_val_accuracy"] > 0.9


def test_the_same_search_command_again_reports_it_and_another_is_refused_for_its_real_reason(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=300, n_test=50, learnable=True)
    common = [
        f"--workdir={tmp_path / 'w'}",
        f"--data_dir={tmp_path / 'data'}",
        "--noverify_data",
        "--architecture=mlp",
        "--method=limit",
        "--noise_rate=0.3",
        "--num_train_examples=200",
        "--epochs=2",
        "--patience=2",
        "--batch_size=64",
        "--oracle=grid",
        "--max_trials=2",
    ]
    for _ in range(2):  # the second time: the finished search and its retrained best_run are reported
        proc = _cli([*common, "--betas=0.1,10"])
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    proc = _cli([*common, "--betas=1,3"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "holds a different search (differs in: values.beta)" in err.strip().splitlines()[-1]
