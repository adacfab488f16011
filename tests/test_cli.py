"""Flags generated from the config; one-line errors from every entry point."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from absl import flags

from limit_tf import cli
from limit_tf.config import ConfigError, ExperimentConfig
from tests.conftest import REPO, write_fake_mnist


def _flag_values(*argv, define=None):
    values = flags.FlagValues()
    (define or (lambda fv: cli.define_config_flags(fv)))(values)
    values(["prog", *argv])
    return values


def test_one_flag_per_config_field_with_its_default_and_help():
    values = _flag_values()
    for field in dataclasses.fields(ExperimentConfig):
        flag = values[field.name]
        default = list(field.default) if isinstance(field.default, tuple) else field.default
        default = None if default == "" else default  # an empty string flag is "not given"
        assert flag.default == default, field.name
        assert flag.help == field.metadata["help"]
    # No noise asked for (no --noise, no --noise_rate): recorded as "none", the same experiment as uniform at 0.
    assert cli.config_from_flags(values) == ExperimentConfig(noise="none")


def test_flags_become_the_config():
    values = _flag_values(
        "--workdir=w", "--method=limit", "--beta=3", "--sample", "--sigma_q=0.1", "--num_train_examples=100",
        "--devices=/gpu:0,/gpu:1", "--noverify_data",
    )  # fmt: skip
    config = cli.config_from_flags(values)
    assert config == ExperimentConfig(
        workdir="w",
        method="limit",
        beta=3.0,
        sample=True,
        sigma_q=0.1,
        num_train_examples=100,
        devices=("/gpu:0", "/gpu:1"),
        verify_data=False,
        noise="none",
    )


def test_entry_point_defaults_and_exclusions():
    values = _flag_values(define=lambda fv: cli.define_config_flags(fv, exclude=("workdir",), defaults={"epochs": 7}))
    assert "workdir" not in values and values["epochs"].default == 7
    assert cli.config_from_flags(values, workdir="x").epochs == 7


def test_grid_flags_cover_every_hyperparameter_and_parse_by_type():
    def define(fv):
        cli.define_config_flags(fv)
        cli.define_grid_flags(fv)

    values = _flag_values(
        "--betas=0,1,10", "--samples=false,true", "--predictors=laplace", "--noise_stds=0.1", define=define
    )
    assert {cli.grid_flag(name) for name in cli.hyperparameters()} <= set(values)
    assert cli.grids_from_flags(values) == {
        "beta": [0.0, 1.0, 10.0],
        "sample": [False, True],
        "predictor": ["laplace"],
        "noise_std": [0.1],
    }
    assert cli.grid_flag("warmup_epochs") == "warmup_epochs_grid"
    for bad, message in (("--betas=a", "--betas: 'a' is not a float"), ("--betas=-1", "it must be >= 0")):
        with pytest.raises(ConfigError, match=message):
            cli.grids_from_flags(_flag_values(bad, define=define))


def _run(module, *args, env=None):
    # Without TF_CPP_MIN_LOG_LEVEL: the entry points must silence TensorFlow themselves.
    full_env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | (env or {})
    command = [sys.executable, *(["-m", module] if not module.endswith(".py") else [module]), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=full_env, timeout=300)


@pytest.mark.parametrize(
    "module,args,message",
    [
        (
            "limit_tf.main",
            ["--noise_rate=1.5", "--workdir={w}"],
            "error: --noise_rate=1.5 is not allowed: it must be in [0, 1).",
        ),
        ("limit_tf.main", ["--workdir={file}"], "is a file, not a directory."),
        ("limit_tf.main", ["--workdir={w}", "extra"], "error: unexpected arguments ['extra']"),
        ("limit_tf.sweep", ["--root={w}", "--variants=limit_x"], "error: --variants: unknown 'limit_x'"),
        ("limit_tf.report", ["--root={w}"], "error: no finished run (results.json) under"),
        ("limit_tf.detection", ["--workdir={w}"], "is not a run's work dir (config.json is missing)."),
        ("limit_tf.detection", ["--workdir={w}", "--score=loss"], "error: unknown score 'loss'"),
        ("limit_tf.demo", ["--root={w}", "--epochs=-1"], "error: --epochs=-1 is not allowed"),
        ("tuner.search", ["--workdir={w}", "--oracle=annealing"], "error: --oracle='annealing' is not allowed"),
        ("benchmarks/throughput.py", ["--variants=sgd", "--out={w}/t.json"], "error: --variants: 'sgd' is not allowed"),
        ("benchmarks/reproduce_mnist.py", ["--cells=0.3:10", "--root={w}"], "is not a cell of the paper's MNIST table"),
    ],
)
def test_entry_points_fail_with_one_line_status_2_and_write_nothing(tmp_path, module, args, message):
    (tmp_path / "afile").write_text("x")
    args = [a.format(w=tmp_path / "w", file=tmp_path / "afile") for a in args]
    result = _run(module, *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in lines[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not any("cpu_feature_guard" in line or line.startswith("I0000") for line in lines), lines
    assert not (tmp_path / "w").exists()


def test_missing_data_offline_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("limit_tf.main", f"--data_dir={empty}", f"--workdir={tmp_path / 'w'}", env={"LIMIT_DATA_DIR": ""})
    assert result.returncode == 2 and "not found offline" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "w").exists()


def test_runner_end_to_end_with_progress_lines(tmp_path):
    write_fake_mnist(tmp_path / "data")
    workdir = tmp_path / "run"
    args = [f"--data_dir={tmp_path / 'data'}", f"--workdir={workdir}", "--architecture=mlp", "--epochs=2"]
    args += ["--batch_size=64", "--method=limit", "--predictor=laplace", "--beta=1", "--noise_rate=0.5"]
    args += ["--num_train_examples=200", "--noverify_data"]
    result = _run("limit_tf.main", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    results = json.loads((workdir / "results.json").read_text())
    assert summary["epochs_run"] == 2 and summary["test_accuracy"] == results["test_accuracy"]
    assert "epoch 2/2" in result.stderr and "ETA" in result.stderr  # progress lines


def test_tensorflow_info_lines_through_absl_are_dropped_ours_kept():
    import logging
    import os

    def record(path, level=logging.INFO):
        return logging.LogRecord("absl", level, path, 1, "msg", None, None)

    saver = os.path.join("site-packages", "tensorflow", "python", "checkpoint", "functional_saver.py")
    assert not cli._quiet_tensorflow_info(record(saver))  # "Sharding callback duration" each epoch
    assert cli._quiet_tensorflow_info(record(saver, logging.WARNING))  # its warnings stay
    assert cli._quiet_tensorflow_info(record(os.path.join("limit_tf", "callbacks.py")))  # our progress lines


def test_tensorflow_import_lines_dropped_are_its_info_lines_only():
    """What TensorFlow prints while it is imported: INFO lines and absl's notice go, the rest stays."""
    import limit_tf

    noise = limit_tf._STARTUP_NOISE
    dropped = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796237967.914782   30200 port.cc:153] oneDNN custom operations are on. ...",
        "I1202 18:00:00.123456 140627264019328 cpu_feature_guard.cc:227] This TensorFlow binary ...",
    ]
    kept = [
        "W0000 00:00:1796237967.914782   30200 port.cc:153] a warning",
        "E1202 18:00:00.123456 1 cuda_dnn.cc:1] an error",
        "UserWarning: a Python warning",
        "INFO: a line that only starts like one",
    ]
    assert all(noise.match(line) for line in dropped)
    assert not any(noise.match(line) for line in kept)


def test_every_config_field_has_a_help_group():
    grouped = [name for names in cli.FLAG_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(f.name for f in dataclasses.fields(ExperimentConfig))


@pytest.mark.parametrize("module", ["limit_tf.main", "limit_tf.detection", "limit_tf.report", "limit_tf.sample_data"])
def test_help_lists_only_this_commands_flags_by_group_without_tensorflow(module):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", module, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert " tensorflow" not in result.stderr  # -X importtime lists every module imported
    assert "--test_tmpdir" not in result.stdout and "--log_dir" not in result.stdout  # absl's / TensorFlow's
    if module == "limit_tf.main":
        for group in ("Data:", "Method:", "Training:", "Output and execution:"):
            assert group in result.stdout
        assert "--method=limit alone is LIMIT without sampling with the data's" in result.stdout
    assert "DESIGN.md" not in result.stdout  # a user's clone has no ../shared/DESIGN.md


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys):
    def main(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "argv", ["prog"])
    with pytest.raises(SystemExit) as exited:
        cli.run(main)
    assert exited.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted; rerun the same command to resume."


def test_storage_failures_name_the_directory_and_the_cause():
    import errno

    full = OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.csv")
    message = cli.storage_failure(full, "runs/x")
    assert message.startswith("cannot write runs/x/metrics.csv (No space left on device)")
    assert "rerun the same command to resume" in message
    assert cli.storage_failure(FileNotFoundError(errno.ENOENT, "gone"), "runs/x") is None
    assert cli.storage_failure(ValueError("other"), "runs/x") is None


def test_the_log_shows_the_settings_that_differ_from_the_defaults():
    config = ExperimentConfig(workdir="runs/x", method="limit", sample=True, sigma_q=0.1)
    assert cli.changed_settings(config) == ["--workdir=runs/x", "--method=limit", "--sample", "--sigma_q=0.1"]


def test_no_noise_asked_for_is_recorded_as_none_and_is_the_same_experiment():
    values = _flag_values("--workdir=w", "--dataset=csv:t.csv", define=cli.define_config_flags)
    config = cli.config_from_flags(values)
    assert config.noise == "none"
    assert not config.differences(config.replace(noise="uniform"))  # what 0.2 wrote for the same run
    noisy = cli.config_from_flags(_flag_values("--workdir=w", "--noise_rate=0.5", define=cli.define_config_flags))
    assert noisy.noise == "uniform"

    # Commands that set the rates themselves keep their --noise default (a benchmark's cells, a sweep's rates).
    def without_rate(fv):
        cli.define_config_flags(fv, exclude=("noise_rate",), defaults={"noise": "uniform"})

    def with_rates(fv):
        cli.define_config_flags(fv)
        cli.define_shared_flags(fv, noise_rates=[])

    assert cli.config_from_flags(_flag_values("--workdir=w", define=without_rate)).noise == "uniform"
    assert (
        cli.config_from_flags(_flag_values("--workdir=w", "--noise_rates=0.5,0.8", define=with_rates)).noise
        == "uniform"
    )
    assert cli.config_from_flags(_flag_values("--workdir=w", define=with_rates)).noise == "none"


def test_the_pure_modules_import_without_tensorflow():
    code = (
        "import sys; import limit_tf, limit_tf.workdir, limit_tf.config, limit_tf.methods, limit_tf.data.user, "
        "limit_tf.report; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr[-2000:]


def test_shared_flags_are_declared_once_and_documented():
    """A flag name that several commands take has one meaning: declared in cli.SHARED_FLAGS, nowhere else."""
    import re

    pattern = re.compile(r"DEFINE_\w+\(\s*\"(" + "|".join(cli.SHARED_FLAGS) + r")\"")
    offenders = []
    for folder in ("limit_tf", "tuner", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "cli.py":
                continue
            offenders += [f"{path.relative_to(REPO)}: --{m}" for m in pattern.findall(path.read_text())]
    assert not offenders, offenders
    table = (REPO / "docs" / "usage.md").read_text()
    for name in (*cli.SHARED_FLAGS, "seed", "noise_seed", "workdir", "untimed_steps"):
        assert f"| `--{name}`" in table, name
    assert "argparse" not in "".join(p.read_text() for p in (REPO / "benchmarks").glob("*.py"))
