r"""KerasTuner search over a method's hyperparameters, then a clean-test retrain.

    python -m tuner.search --dataset=mnist --noise=uniform --noise_rate=0.8 \
        --num_train_examples=1000 --method=limit --predictor=laplace \
        --oracle=grid --executions_per_trial=3 --epochs=50 --patience=15 \
        --workdir=runs/tune_u80_n1000

Every setting of the runner is a flag here too, with the runner's meaning
and default (except ``--method=limit`` and ``--predictor=laplace``, the
tuner's subject). The search space comes from the method table: the paper's
grid of every hyperparameter the paper searches (``--nopaper_grids`` turns
that off), overridden by the grid flags (``--betas=0,1,10``,
``--sigma_qs``, ``--noise_stds``, ``--learning_rates``, ``--predictors``,
``--samples=false,true``, ...) and by ranges for random / Bayesian search
(``--beta_range=0.1,100``).

The objective is the best (noisy, unless --clean_validation) validation
accuracy of a trial, averaged over its executions (execution ``e`` uses seed
``--seed + e``; the paper selects by the mean over seeds). Trials train on
the runner's own pipeline. The selected hyperparameters are then trained once
more by the experiment runner (``limit_tf.train``) and evaluated on the clean
test set. The work dir gets ``trials.csv`` / ``trials.md`` (one row per trial),
``best_hyperparameters.json``, ``val_accuracy_vs_beta.png`` (when beta is
searched), ``summary.json``, ``search.json`` (what is searched; a rerun with
another search in the same work dir is refused) and the retrained run in
``best_run/``; KerasTuner's own state lives in ``kt/``, so an interrupted
search continues without repeating finished trials when started again with
the same command, and a larger ``--max_trials`` extends it. One line per
finished trial shows its hyperparameters, score, time and the search's ETA.

Distributed tuning (KerasTuner's chief/worker mode): start one chief and any
number of workers with the same command and these variables::

    KERASTUNER_TUNER_ID=chief   KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 python -m tuner.search ...
    KERASTUNER_TUNER_ID=tuner0  KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 python -m tuner.search ...

The chief serves the oracle and, when all trials are done, writes the reports
and retrains the best setting; workers run trials. All share --workdir.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import time
from pathlib import Path

from absl import flags, logging

from limit_tf import cli, methods, workdir
from limit_tf.config import ConfigError, ExperimentConfig

ORACLES = ("grid", "random", "bayesian", "hyperband")
TUNER_DEFAULTS = {"method": methods.LIMIT, "predictor": "laplace"}
FLAGS = flags.FLAGS


def define_flags() -> None:
    cli.define_config_flags(defaults=TUNER_DEFAULTS)
    cli.define_grid_flags(what="values to search")
    for name, h in cli.hyperparameters().items():
        if h.kind == "float":
            flags.DEFINE_list(f"{name}_range", [], f"low,high: search {name} as a float in this range instead.")
    flags.DEFINE_string("oracle", "grid", f"Search algorithm: {', '.join(ORACLES)}.")
    flags.DEFINE_integer("max_trials", 20, "Maximum number of trials.")
    flags.DEFINE_integer("executions_per_trial", 1, "Trainings per trial (seeds --seed, --seed + 1, ...), averaged.")
    cli.define_shared_flags(paper_grids=True)
    flags.DEFINE_bool("retrain", True, "Retrain the best setting and evaluate it on the clean test set.")


def settings_from_flags():
    """Validates every flag; returns (base config, search space, options)."""
    from tuner.hypermodel import SearchSpace

    if not FLAGS.workdir:
        raise ConfigError("--workdir is required: a directory for the search.")
    if FLAGS.oracle not in ORACLES:
        raise ConfigError(f"--oracle={FLAGS.oracle!r} is not allowed; allowed: {', '.join(ORACLES)}.")
    for flag in ("max_trials", "executions_per_trial"):
        if FLAGS[flag].value < 1:
            raise ConfigError(f"--{flag}={FLAGS[flag].value} is not allowed: it must be an integer >= 1.")
    ranges = {}
    for name, h in cli.hyperparameters().items():
        texts = FLAGS[f"{name}_range"].value if h.kind == "float" else []
        if texts:
            values = [cli.parse_value(h, t) for t in texts]
            if len(values) != 2:
                raise ConfigError(f"--{name}_range={','.join(texts)!r} is not allowed: give low,high.")
            ranges[name] = tuple(values)
    base = cli.config_from_flags(workdir=str(Path(FLAGS.workdir) / "best_run"))
    space = SearchSpace.for_method(
        base.method, grids=cli.grids_from_flags(), ranges=ranges, paper_grids=FLAGS.paper_grids
    )
    if base.strategy == "multi_worker":
        raise ConfigError(
            "--strategy=multi_worker is not supported by the tuner (its trials use Keras' fit, which fails under it); "
            "use KerasTuner's chief/worker mode (docs/tuning.md), with --strategy=mirrored on each machine."
        )
    base = with_searched_placeholders(base, space).validate()
    options = {
        "oracle": FLAGS.oracle,
        "max_trials": FLAGS.max_trials,
        "executions_per_trial": FLAGS.executions_per_trial,
    }
    return base, space, options


def with_searched_placeholders(base: ExperimentConfig, space) -> ExperimentConfig:
    """``base`` with every searched hyperparameter at one of its values, so that it validates
    (each trial sets its own; e.g. sigma_q is > 0 when "+S" is set and sigma_q searched)."""
    values = {name: choices[0] for name, choices in space.values.items()}
    values.update({name: high for name, (_, high) in space.ranges.items()})
    return base.replace(**values)


def search_identity(base: ExperimentConfig, space, *, oracle: str, executions_per_trial: int) -> dict:
    """What makes two searches the same (the budget may grow)."""
    experiment = {k: v for k, v in base.experiment().items() if k not in space.values and k not in space.ranges}
    identity = {
        "experiment": experiment,
        "values": {k: list(v) for k, v in space.values.items()},
        "ranges": {k: list(v) for k, v in space.ranges.items()},
        "oracle": oracle,
        "executions_per_trial": executions_per_trial,
    }
    return json.loads(json.dumps(identity))  # as stored: tuples become lists


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += _differences(a[key], b[key], f"{key}.")
        elif a.get(key) != b.get(key):
            out.append(prefix + key)
    return out


def check_search(directory: Path, identity: dict) -> None:
    """Refuses a work dir that holds a different search; records this one's identity."""
    path = directory / "search.json"
    stored = workdir.read_json(path, remedy="delete it if the search in this directory is the one you run")
    if stored is None:
        directory.mkdir(parents=True, exist_ok=True)
        workdir.write_json(path, identity)
        return
    changed = _differences(identity, stored)
    if changed:
        raise ConfigError(
            f"--workdir={str(directory)!r} holds a different search (differs in: {', '.join(changed)}); "
            "use a new work dir."
        )


def _resumable_grid_oracle(**kwargs):
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


class _TrialProgress:
    """Mixed into the KerasTuner tuner: seeds per execution, one log line per finished trial."""

    def on_trial_begin(self, trial):
        self._trial_start = time.time()
        super().on_trial_begin(trial)

    def _build_and_fit_model(self, trial, *args, **kwargs):
        executions = self.__dict__.setdefault("_executions", {})
        self.hypermodel.execution = executions.get(trial.trial_id, 0)
        executions[trial.trial_id] = self.hypermodel.execution + 1
        return super()._build_and_fit_model(trial, *args, **kwargs)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        seconds = time.time() - getattr(self, "_trial_start", time.time())
        times = self.__dict__.setdefault("_trial_seconds", [])
        times.append(seconds)
        trials = getattr(self.oracle, "trials", None)  # a worker's oracle client has none: count its own
        ended = ("COMPLETED", "INVALID", "FAILED")
        done = len(times) if trials is None else sum(1 for t in trials.values() if str(t.status) in ended)
        expected = getattr(self, "_expected_trials", done)
        best = self.oracle.get_best_trials(1)
        values = " ".join(f"{k}={_fmt(v)}" for k, v in trial.hyperparameters.values.items())
        ended_trial = self.oracle.get_trial(trial.trial_id)  # a worker's copy lacks the score
        score = "no score (failed)" if ended_trial.score is None else f"val_accuracy {ended_trial.score:.4f}"
        logging.info(
            "trial %s done (%d of %d): %s -> %s (best %s), %s, ETA %s",
            trial.trial_id,
            done,
            expected,
            values,
            score,
            f"{best[0].score:.4f}" if best and best[0].score is not None else "-",
            _seconds(seconds),
            _seconds(max(expected - done, 0) * sum(times) / len(times)),
        )


def _seconds(value: float) -> str:
    from limit_tf.callbacks import format_seconds

    return format_seconds(value)


def expected_trials(space, oracle: str, max_trials: int) -> int:
    if oracle != "grid" or space.ranges:
        return max_trials
    return min(max_trials, math.prod(len(set(v)) for v in space.values.values()))


def make_tuner(
    hypermodel, oracle: str, directory: str, *, max_trials: int, executions_per_trial: int, seed: int, strategy=None
):
    """A KerasTuner tuner that resumes from ``<directory>/kt`` (finished trials are kept)."""
    import keras_tuner as kt

    objective = kt.Objective("val_accuracy", direction="max")
    common = dict(
        directory=str(Path(directory) / "kt"),
        project_name="search",
        overwrite=False,
        executions_per_trial=executions_per_trial,
        distribution_strategy=strategy,
    )
    if oracle == "grid":
        grid = _resumable_grid_oracle(objective=objective, max_trials=max_trials, seed=seed)
        return type("GridTuner", (_TrialProgress, kt.Tuner), {})(oracle=grid, hypermodel=hypermodel, **common)
    classes = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization, "hyperband": kt.Hyperband}
    cls = type(f"Logged{classes[oracle].__name__}", (_TrialProgress, classes[oracle]), {})
    budget = {"max_epochs": hypermodel.base.epochs} if oracle == "hyperband" else {"max_trials": max_trials}
    return cls(hypermodel, objective=objective, seed=seed, **budget, **common)


def trial_rows(tuner) -> list[dict]:
    """One row per trial: id, status, score, hyperparameters."""
    return [
        {"trial": t.trial_id, "status": str(t.status), "val_accuracy": t.score, **t.hyperparameters.values}
        for t in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    ]


def write_reports(tuner, directory: str) -> dict:
    """trials.csv / trials.md / best_hyperparameters.json / val_accuracy_vs_beta.png."""
    out = Path(directory)
    rows = trial_rows(tuner)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    workdir.write_text(out / "trials.csv", buffer.getvalue())
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in sorted(rows, key=lambda r: -(r["val_accuracy"] or -1)):
        lines.append("| " + " | ".join(_fmt(row.get(k)) for k in keys) + " |")
    workdir.write_text(out / "trials.md", "\n".join(lines) + "\n")
    best = tuner.oracle.get_best_trials(1)[0]
    best_hp = {"trial": best.trial_id, "val_accuracy": best.score, "hyperparameters": best.hyperparameters.values}
    workdir.write_json(out / "best_hyperparameters.json", best_hp)
    _plot_beta(rows, out / "val_accuracy_vs_beta.png")
    return best_hp


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plot_beta(rows, path: Path) -> None:
    from matplotlib.figure import Figure

    done = [r for r in rows if r.get("val_accuracy") is not None and "beta" in r]
    if not done:
        return
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    others = [k for k in done[0] if k not in ("trial", "status", "val_accuracy", "beta")]
    groups = sorted({tuple(r.get(k) for k in others) for r in done}, key=str)
    for group in groups:
        pts = sorted((r["beta"], r["val_accuracy"]) for r in done if tuple(r.get(k) for k in others) == group)
        label = " ".join(f"{k}={_fmt(v)}" for k, v in zip(others, group, strict=True) if v is not None) or "beta"
        ax.plot([max(b, 1e-2) for b, _ in pts], [v for _, v in pts], marker="o", label=label)
    ax.set(xscale="log", xlabel="beta (0 plotted at 0.01)", ylabel="best validation accuracy (mean over executions)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_search(
    base: ExperimentConfig,
    space,
    *,
    oracle: str,
    max_trials: int,
    executions_per_trial: int,
    retrain: bool,
    callbacks=(),
    dataset=None,
) -> dict | None:
    """Runs (or resumes) the search; on the chief (or alone) writes the reports
    and retrains the best setting. Returns the summary (None on a worker)."""
    import keras
    from keras_tuner.src.distribute import utils as kt_dist

    from limit_tf import distribute, train
    from tuner.hypermodel import MethodHyperModel

    directory = Path(base.workdir).parent
    check_search(directory, search_identity(base, space, oracle=oracle, executions_per_trial=executions_per_trial))
    # The placeholders of the searched values are not the retrained run's: best_run/ is checked when it is trained.
    dataset = dataset if dataset is not None else train.prepare(base, check_run_dir=False)
    if base.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    init = str(Path(base.init_from) / workdir.BEST_WEIGHTS) if base.init_from else None
    hypermodel = MethodHyperModel(base, dataset, space, init_weights=init)
    keras.utils.set_random_seed(base.seed)
    strategy = distribute.get_strategy(base.strategy, base.devices) if base.strategy != "default" else None
    tuner = make_tuner(
        hypermodel,
        oracle,
        str(directory),
        max_trials=max_trials,
        executions_per_trial=executions_per_trial,
        seed=base.seed,
        strategy=strategy,
    )
    tuner._expected_trials = expected_trials(space, oracle, max_trials)
    logging.info(
        "search: %s over %s, up to %d trials", oracle, {**space.values, **space.ranges}, tuner._expected_trials
    )
    # Each trial selects its epoch as the runner does (MethodHyperModel.fit: the runner's selection callbacks).
    tuner.search(epochs=hypermodel.base.epochs, callbacks=list(callbacks), verbose=0)
    if kt_dist.has_chief_oracle() and not kt_dist.is_chief_oracle():
        logging.info("worker %s: no trials left", os.environ.get("KERASTUNER_TUNER_ID"))
        return None
    best = write_reports(tuner, str(directory))
    summary = {"method": base.method, "best": best, "num_trials": len(tuner.oracle.trials)}
    if retrain:
        config = hypermodel.config_for(tuner.oracle.get_best_trials(1)[0].hyperparameters)
        results = train.run_experiment(config, dataset=dataset)
        summary["retrained"] = {
            k: results[k] for k in ("test_accuracy", "best_val_accuracy", "best_epoch", "epochs_run")
        }
        summary["retrained"]["label"] = methods.label(config, defaults={})
    workdir.write_json(directory / "summary.json", summary)
    return summary


def main(argv) -> None:
    del argv
    base, space, options = settings_from_flags()
    from limit_tf import train

    dataset = train.prepare(base, check_run_dir=False)
    summary = run_search(base, space, retrain=FLAGS.retrain, dataset=dataset, **options)
    if summary is not None:
        print((Path(FLAGS.workdir) / "trials.md").read_text())
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    cli.run(main, define_flags)
