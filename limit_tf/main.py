r"""Runs one experiment of the paper's protocol from the command line.

Example (MNIST, 80% uniform noise, 1,000 training examples, LIMIT_L, beta=10)::

    python -m limit_tf.main --dataset=mnist --data_dir=../shared/data \
        --noise=uniform --noise_rate=0.8 --num_train_examples=1000 \
        --method=limit --predictor=laplace --beta=10 --epochs=100 --patience=30 \
        --workdir=runs/mnist_u80_n1000/limit_l

Prints one line per epoch (metrics, best epoch, ETA) and the final results;
everything is written to --workdir (see limit_tf.train). Rerunning the same
command resumes an interrupted run or reports a finished one. Invalid flags
exit with status 2 before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from limit_tf import config as config_lib  # noqa: E402

FLAGS = flags.FLAGS
_DEFAULTS = config_lib.ExperimentConfig()


def define_flags() -> None:
    """Defines the runner's flags (also used by limit_tf.sweep)."""
    d = _DEFAULTS
    flags.DEFINE_string("workdir", None, "Directory for this run's outputs (required).")
    flags.DEFINE_string("dataset", d.dataset, f"One of {', '.join(config_lib.DATASET_NAMES)}.")
    flags.DEFINE_string("data_dir", None, "Directory with the original data files (default: $LIMIT_DATA_DIR).")
    flags.DEFINE_string("data_source", d.data_source, "auto (local files, then prepared tfds), local or tfds.")
    flags.DEFINE_bool("allow_download", d.allow_download, "Let tensorflow-datasets download missing data.")
    flags.DEFINE_string("noise", d.noise, f"Label-noise model: {', '.join(config_lib.NOISE_NAMES)}.")
    flags.DEFINE_float("noise_rate", d.noise_rate, "Noise rate in [0, 1).")
    flags.DEFINE_integer("num_train_examples", None, "Training subset size n (default: the whole training part).")
    flags.DEFINE_bool("clean_validation", d.clean_validation, "Keep validation labels clean.")
    flags.DEFINE_string("method", d.method, f"Method: {', '.join(config_lib.METHOD_NAMES)}.")
    flags.DEFINE_float("beta", d.beta, "LIMIT's norm penalty beta (soft_reg: its beta).")
    flags.DEFINE_float("sigma_q", d.sigma_q, "Std of LIMIT's sampled gradient (with --sample).")
    flags.DEFINE_string("predictor", d.predictor, "LIMIT's q distribution: gaussian, laplace or ce.")
    flags.DEFINE_bool("sample", d.sample, "LIMIT '+S': sample the gradient around its predicted mean.")
    flags.DEFINE_integer("warmup_epochs", d.warmup_epochs, "LIMIT: epochs during which only q trains.")
    flags.DEFINE_string("init_from", None, "Work dir of a finished CE run: LIMIT '+init', FW and DMI start from it.")
    flags.DEFINE_float("gce_q", d.gce_q, "GCE's q.")
    flags.DEFINE_float("noise_std", d.noise_std, "CE+GN / CE+LN: per-example std of the gradient noise.")
    flags.DEFINE_float("soft_lambda", d.soft_lambda, "Soft regularization (eq. 11): lambda.")
    flags.DEFINE_string(
        "architecture", None, f"Network: {', '.join(config_lib.ARCHITECTURE_NAMES)} (default by dataset)."
    )
    flags.DEFINE_integer("epochs", d.epochs, "Maximum number of epochs.")
    flags.DEFINE_integer("patience", d.patience, "Stop after this many epochs without a better validation accuracy.")
    flags.DEFINE_integer("batch_size", d.batch_size, "Global batch size.")
    flags.DEFINE_float("learning_rate", d.learning_rate, "Adam's learning rate.")
    flags.DEFINE_integer("seed", d.seed, "Seed of the weights, the batch order and sampling.")
    flags.DEFINE_integer("noise_seed", d.noise_seed, "Seed of the split, the subset and the label noise.")
    flags.DEFINE_bool(
        "track_test_accuracy",
        d.track_test_accuracy,
        "Also log clean test accuracy per epoch (for plots; never for selection).",
    )
    flags.DEFINE_bool("jit_compile", d.jit_compile, "Compile the training step with XLA.")
    flags.DEFINE_bool("deterministic", d.deterministic, "Enable TensorFlow op determinism.")
    flags.DEFINE_string(
        "strategy",
        d.strategy,
        "Distribution: default (one device), mirrored (all local GPUs) or multi_worker (the cluster in "
        "$TF_CONFIG; run the same command on every worker). See docs/distributed.md.",
    )
    flags.DEFINE_list("devices", [], "Devices for --strategy=mirrored (default: all local GPUs).")


CONFIG_FLAGS = [f.name for f in dataclasses.fields(config_lib.ExperimentConfig)]


def config_from_flags(**overrides) -> config_lib.ExperimentConfig:
    """Reads the parsed flags once into a frozen config."""
    values = {name: FLAGS[name].value for name in CONFIG_FLAGS}
    values["workdir"] = values["workdir"] or ""
    values["devices"] = tuple(values["devices"] or ())
    values.update(overrides)
    return config_lib.ExperimentConfig.from_dict(values)


def fail(message: str) -> None:
    """Prints a one-line error and exits with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; all settings are --flags.")
    try:
        config = config_from_flags()
        if config.strategy == "multi_worker":
            config.validate()
            from limit_tf import distribute

            distribute.get_strategy("multi_worker")  # before any other TensorFlow op
        from limit_tf import train

        dataset = train.prepare(config)
    except config_lib.ConfigError as e:
        fail(str(e))
    logging.info("config: %s", config.to_json().replace("\n", " "))
    try:
        results = train.run_experiment(config, dataset=dataset)
    except train.TrainingDivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    summary = {
        k: results[k] for k in ("test_accuracy", "best_val_accuracy", "best_epoch", "epochs_run", "realized_noise_rate")
    }
    print(json.dumps(summary, indent=2))


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
