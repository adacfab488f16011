r"""KerasTuner search over LIMIT's hyperparameters, then a clean-test retrain.

    python -m tuner.search --dataset=mnist --noise=uniform --noise_rate=0.8 \
        --num_train_examples=1000 --method=limit --predictors=laplace \
        --betas=0,0.1,0.3,1,3,10,30,100 --oracle=grid --executions_per_trial=3 \
        --epochs=50 --patience=15 --workdir=runs/tune_u80_n1000

The objective is the best (noisy, unless --clean_validation) validation
accuracy of a trial, averaged over its executions (the paper selects by the
mean over seeds). The selected hyperparameters are then trained once more by
the experiment runner (``limit_tf.train``) and evaluated on the clean test
set. The work dir gets ``trials.csv`` / ``trials.md`` (one row per trial),
``best_hyperparameters.json``, ``val_accuracy_vs_beta.png``, ``summary.json``
and the retrained run in ``best_run/``; KerasTuner's own state lives in
``kt/``, so an interrupted search continues without repeating finished
trials when started again with the same command.

Distributed tuning (KerasTuner's chief/worker mode): start one chief and any
number of workers with the same command and these variables::

    KERASTUNER_TUNER_ID=chief   KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 python -m tuner.search ...
    KERASTUNER_TUNER_ID=tuner0  KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 python -m tuner.search ...

The chief serves the oracle and, when all trials are done, writes the reports
and retrains the best setting; workers run trials. All share --workdir.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

ORACLES = ("grid", "random", "bayesian", "hyperband")
FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "Directory of the search (required).")
    flags.DEFINE_string("dataset", "mnist", "Dataset.")
    flags.DEFINE_string("data_dir", None, "Data directory (default: $LIMIT_DATA_DIR).")
    flags.DEFINE_string("noise", "uniform", "Label-noise model.")
    flags.DEFINE_float("noise_rate", 0.0, "Noise rate in [0, 1).")
    flags.DEFINE_integer("num_train_examples", None, "Training subset size n.")
    flags.DEFINE_bool("clean_validation", False, "Select on clean validation labels.")
    flags.DEFINE_string("method", "limit", "A method of the method table.")
    flags.DEFINE_string("architecture", None, "Network (default by dataset).")
    flags.DEFINE_string("init_from", None, "A CE run's work dir (FW, DMI, LIMIT '+init').")
    flags.DEFINE_string("oracle", "grid", f"Search algorithm: {', '.join(ORACLES)}.")
    flags.DEFINE_integer("max_trials", 20, "Maximum number of trials.")
    flags.DEFINE_integer("executions_per_trial", 1, "Trainings per trial, averaged (seeds).")
    flags.DEFINE_integer("epochs", 50, "Maximum epochs per training.")
    flags.DEFINE_integer("patience", 15, "Early stopping patience on validation accuracy.")
    flags.DEFINE_integer("batch_size", 256, "Batch size.")
    flags.DEFINE_list("betas", [str(b) for b in (0, 0.1, 0.3, 1, 3, 10, 30, 100)], "Beta choices (the paper's grid).")
    flags.DEFINE_list("beta_range", [], "low,high: search beta log-uniformly instead of --betas.")
    flags.DEFINE_list("predictors", ["laplace"], "LIMIT predictors: gaussian, laplace, ce.")
    flags.DEFINE_list("samples", ["false"], "Search '+S': false, true or false,true.")
    flags.DEFINE_list("sigma_qs", ["0.01", "0.03", "0.1", "0.3"], "sigma_q choices when sampling.")
    flags.DEFINE_list("learning_rates", ["0.001"], "Learning-rate choices.")
    flags.DEFINE_integer("seed", 0, "Seed of the search, the weights and the data split/noise.")
    flags.DEFINE_bool("retrain", True, "Retrain the best setting and evaluate it on the clean test set.")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _floats(flag: str, values) -> list[float]:
    try:
        return [float(v) for v in values]
    except ValueError:
        fail(f"--{flag}={','.join(values)!r} is not allowed: a comma-separated list of numbers is required.")


def _bools(flag: str, values) -> list[bool]:
    table = {"true": True, "false": False}
    if not values or any(v.lower() not in table for v in values):
        fail(f"--{flag}={','.join(values)!r} is not allowed: use false, true or false,true.")
    return [table[v.lower()] for v in values]


def settings_from_flags():
    """Validates every flag; returns (base config, search space, search options)."""
    from limit_tf.config import ConfigError, ExperimentConfig
    from tuner.hypermodel import SearchSpace

    if not FLAGS.workdir:
        fail("--workdir is required: a directory for the search.")
    if FLAGS.oracle not in ORACLES:
        fail(f"--oracle={FLAGS.oracle!r} is not allowed; allowed: {', '.join(ORACLES)}.")
    for flag in ("max_trials", "executions_per_trial", "epochs", "patience", "batch_size"):
        if FLAGS[flag].value < 1:
            fail(f"--{flag}={FLAGS[flag].value} is not allowed: it must be an integer >= 1.")
    beta_range = _floats("beta_range", FLAGS.beta_range) if FLAGS.beta_range else None
    if beta_range is not None and len(beta_range) != 2:
        fail(f"--beta_range={','.join(FLAGS.beta_range)!r} is not allowed: give low,high.")
    try:
        space = SearchSpace(
            betas=None if beta_range else _floats("betas", FLAGS.betas),
            beta_range=tuple(beta_range) if beta_range else None,
            predictors=tuple(FLAGS.predictors),
            samples=tuple(_bools("samples", FLAGS.samples)),
            sigma_qs=tuple(_floats("sigma_qs", FLAGS.sigma_qs)),
            learning_rates=tuple(_floats("learning_rates", FLAGS.learning_rates)),
        ).validate()
        base = ExperimentConfig(
            workdir=str(Path(FLAGS.workdir) / "best_run"),
            dataset=FLAGS.dataset,
            data_dir=FLAGS.data_dir,
            noise=FLAGS.noise,
            noise_rate=FLAGS.noise_rate,
            num_train_examples=FLAGS.num_train_examples,
            clean_validation=FLAGS.clean_validation,
            method=FLAGS.method,
            architecture=FLAGS.architecture,
            init_from=FLAGS.init_from,
            epochs=FLAGS.epochs,
            patience=FLAGS.patience,
            batch_size=FLAGS.batch_size,
            seed=FLAGS.seed,
            noise_seed=FLAGS.seed,
            sigma_q=max(space.sigma_qs),  # replaced per trial; valid if sampling is searched
        ).validate()
    except (ConfigError, ValueError) as e:
        fail(str(e).removeprefix("error: "))
    return base, space


def _resumable_grid_oracle(**kwargs):
    import functools

    import keras_tuner as kt

    class ResumableGridSearchOracle(kt.oracles.GridSearchOracle):
        """GridSearch whose walk through the grid survives a restart.

        KerasTuner 1.4.8's grid oracle does not save the order in which it
        walks the grid; reloaded, it fails with a KeyError or stops early.
        Before each new trial, the walk is rebuilt from the known trials
        (sorted as the oracle compares them) if any is missing from it.
        """

        def populate_space(self, trial_id):
            walked = getattr(self, "_walked_ids", set())
            known = [tid for tid, trial in self.trials.items() if tid != trial_id and trial.hyperparameters.values]
            if not set(known) <= walked:
                values = {tid: self.trials[tid].hyperparameters.values for tid in known}
                ordered = sorted(known, key=functools.cmp_to_key(lambda a, b: self._compare(values[a], values[b])))
                self._ordered_ids = type(self._ordered_ids)()
                for tid in ordered:
                    self._ordered_ids.insert(tid)
                self._populate_next = list(ordered)
                walked = set(ordered)
            result = super().populate_space(trial_id)
            if result.get("values") is not None:
                walked.add(trial_id)
            self._walked_ids = walked
            return result

    return ResumableGridSearchOracle(**kwargs)


def make_tuner(
    hypermodel, oracle: str, workdir: str, *, max_trials: int, executions_per_trial: int, epochs: int, seed: int
):
    """A KerasTuner tuner that resumes from ``<workdir>/kt`` (finished trials are kept)."""
    import keras_tuner as kt

    objective = kt.Objective("val_accuracy", direction="max")
    location = dict(directory=str(Path(workdir) / "kt"), project_name="search", overwrite=False)
    if oracle == "grid":
        grid = _resumable_grid_oracle(objective=objective, max_trials=max_trials, seed=seed)
        return kt.Tuner(oracle=grid, hypermodel=hypermodel, executions_per_trial=executions_per_trial, **location)
    common = dict(objective=objective, executions_per_trial=executions_per_trial, seed=seed, **location)
    if oracle == "random":
        return kt.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if oracle == "bayesian":
        return kt.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    return kt.Hyperband(hypermodel, max_epochs=epochs, **common)


def trial_rows(tuner) -> list[dict]:
    """One row per trial: id, status, score, hyperparameters."""
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        rows.append(
            {
                "trial": trial.trial_id,
                "status": str(trial.status),
                "val_accuracy": trial.score,
                **trial.hyperparameters.values,
            }
        )
    return rows


def write_reports(tuner, workdir: str) -> dict:
    """trials.csv / trials.md / best_hyperparameters.json / val_accuracy_vs_beta.png."""
    out = Path(workdir)
    rows = trial_rows(tuner)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in sorted(rows, key=lambda r: -(r["val_accuracy"] or -1)):
        lines.append("| " + " | ".join(_fmt(row.get(k)) for k in keys) + " |")
    (out / "trials.md").write_text("\n".join(lines) + "\n")
    best = tuner.oracle.get_best_trials(1)[0]
    best_hp = {"trial": best.trial_id, "val_accuracy": best.score, "hyperparameters": best.hyperparameters.values}
    (out / "best_hyperparameters.json").write_text(json.dumps(best_hp, indent=2))
    _plot_beta(rows, out / "val_accuracy_vs_beta.png")
    return best_hp


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _plot_beta(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("val_accuracy") is not None and "beta" in r]
    if not done:
        return
    fig, ax = plt.subplots(figsize=(5.5, 4))
    groups = sorted({(r.get("predictor", "-"), r.get("sample", False), r.get("sigma_q")) for r in done}, key=str)
    for predictor, sample, sigma in groups:
        pts = sorted(
            (r["beta"], r["val_accuracy"])
            for r in done
            if (r.get("predictor", "-"), r.get("sample", False), r.get("sigma_q")) == (predictor, sample, sigma)
        )
        label = f"{predictor}" + (f" +S sigma_q={sigma}" if sample else "")
        ax.plot([max(b, 1e-2) for b, _ in pts], [v for _, v in pts], marker="o", label=label)
    ax.set(xscale="log", xlabel="beta (0 plotted at 0.01)", ylabel="best validation accuracy (mean over executions)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_search(
    base, space, *, oracle: str, max_trials: int, executions_per_trial: int, retrain: bool, callbacks=()
) -> dict | None:
    """Runs (or resumes) the search; on the chief (or alone) writes the reports
    and retrains the best setting. Returns the summary (None on a worker)."""
    import keras
    from keras_tuner.src.distribute import utils as kt_dist

    from limit_tf import data as data_lib
    from limit_tf import train
    from tuner.hypermodel import MethodHyperModel

    workdir = str(Path(base.workdir).parent)
    dataset = train.load_data(base)
    init = str(Path(base.init_from) / "best.weights.h5") if base.init_from else None
    hypermodel = MethodHyperModel(base, dataset.num_classes, dataset.input_shape, space, init_weights=init)
    keras.utils.set_random_seed(base.seed)
    tuner = make_tuner(
        hypermodel,
        oracle,
        workdir,
        max_trials=max_trials,
        executions_per_trial=executions_per_trial,
        epochs=base.epochs,
        seed=base.seed,
    )
    stop = keras.callbacks.EarlyStopping("val_accuracy", mode="max", patience=base.patience)
    tuner.search(
        data_lib.to_tf_dataset(dataset, "train", batch_size=base.batch_size, training=True, seed=base.seed),
        validation_data=data_lib.to_tf_dataset(dataset, "validation", batch_size=1024),
        epochs=base.epochs,
        callbacks=[stop, *callbacks],
        verbose=0,
    )
    if kt_dist.has_chief_oracle() and not kt_dist.is_chief_oracle():
        logging.info("worker %s: no trials left", os.environ.get("KERASTUNER_TUNER_ID"))
        return None
    best = write_reports(tuner, workdir)
    summary = {"best": best, "num_trials": len(tuner.oracle.trials)}
    if retrain:
        config = hypermodel.config_for(tuner.oracle.get_best_trials(1)[0].hyperparameters)
        results = train.run_experiment(config, dataset=dataset)
        summary["retrained"] = {
            k: results[k] for k in ("test_accuracy", "best_val_accuracy", "best_epoch", "epochs_run")
        }
    (Path(workdir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; all settings are --flags.")
    base, space = settings_from_flags()
    from limit_tf import train
    from limit_tf.config import ConfigError

    try:
        train.load_data(base)
    except (ValueError, FileNotFoundError) as e:
        fail(str(ConfigError(str(e))))
    summary = run_search(
        base,
        space,
        oracle=FLAGS.oracle,
        max_trials=FLAGS.max_trials,
        executions_per_trial=FLAGS.executions_per_trial,
        retrain=FLAGS.retrain,
    )
    if summary is not None:
        print((Path(FLAGS.workdir) / "trials.md").read_text())
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
