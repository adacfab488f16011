r"""Runs a grid of experiments, skipping finished ones, then writes the report.

Example (the paper's MNIST cells that fit a CPU, 3 seeds)::

    python -m limit_tf.sweep --root=runs/mnist --data_dir=../shared/data \
        --noise=uniform --noise_rates=0.5,0.8 --sizes=1000,10000 \
        --variants=ce,limit_g,limit_l --betas=10 --seeds=3 \
        --epochs=100 --patience=30

Every run gets its own work dir ``<root>/<dataset>_<noise><p>_n<n>/<run
name>/seed<k>``, where the run name is the variant and its hyperparameters
(``limit_l_beta10``, ``ce_gn_std0.1``, ``dmi_lr0.0001``, ``..._init``; see
``limit_tf.methods.run_name``); the seed is used for the weights and for the
split/noise (``noise_seed``), as the paper averages over 5 training/validation
splits. CE runs first in each cell, so that FW, DMI and LIMIT "+init"
(``--plus_init``) can start from it. Every hyperparameter of the method table
has a grid flag (``--betas``, ``--sigma_qs``, ``--noise_stds``,
``--soft_lambdas``, ``--learning_rates``, ...); every hyperparameter the
paper searches runs over the paper's grid unless its grid flag narrows it
(``--paper_grids``, the default; ``--nopaper_grids``: each at its own flag's
value). All other flags are those of
``limit_tf.main`` and apply to every run. Interrupting the sweep and starting
it again continues where it stopped; a finished run of a different
experiment in one of the work dirs stops the sweep before anything runs.
"""

from __future__ import annotations

from pathlib import Path

from limit_tf import cli, grid, methods
from limit_tf import config as config_lib

FLAGS = cli.FLAGS


def _int_or_all(values) -> list[int | None]:
    try:
        return [None if v in ("all", "") else int(v) for v in values]
    except ValueError:
        raise config_lib.ConfigError(f"--sizes={','.join(values)!r}: give integers or 'all'.") from None


def _floats(flag: str, values) -> list[float]:
    try:
        return [float(v) for v in values]
    except ValueError:
        raise config_lib.ConfigError(f"--{flag}={','.join(values)!r}: give numbers.") from None


def configs_from_flags() -> list[config_lib.ExperimentConfig]:
    base = cli.config_from_flags(workdir="sweep")
    configs = grid.sweep_configs(
        base,
        root=FLAGS.root,
        noise_rates=_floats("noise_rates", FLAGS.noise_rates) if FLAGS.noise_rates else [base.noise_rate],
        sizes=_int_or_all(FLAGS.sizes) if FLAGS.sizes else [base.num_train_examples],
        variants=FLAGS.variants,
        seeds=range(FLAGS.seeds),
        grids=cli.grids_from_flags(),
        paper_grids=FLAGS.paper_grids,
        plus_init=FLAGS.plus_init,
    )
    from limit_tf import paths, train

    for config in configs:
        # Everything is checked before the first run; the CE dirs for --init_from may not exist yet.
        paths.check(config.validate(), init_from=False)
        train.finished_results(config)
        train.check_workdir(config)
    return configs


def main(argv) -> None:
    del argv
    from absl import logging

    from limit_tf import report

    configs = configs_from_flags()
    logging.info("sweep: %d runs under %s", len(configs), FLAGS.root)
    grid.run_sweep(configs)
    markdown, _ = report.write_report(FLAGS.root)
    print(markdown)
    print(f"report: {Path(FLAGS.root) / 'report.md'} (+ report.csv and PNG curves)")


def define_flags() -> None:
    from absl import flags

    # --seeds replaces --seed and --noise_seed: run k uses seed k for both (the paper's protocol).
    cli.define_config_flags(exclude=("workdir", "seed", "noise_seed"))
    cli.define_grid_flags()
    cli.define_shared_flags(root="runs/sweep", noise_rates=[], variants=list(methods.DEFAULT_VARIANTS), seeds=1)
    cli.define_shared_flags(paper_grids=True)
    flags.DEFINE_list("sizes", [], "Training-set sizes n, or 'all' (default: --num_train_examples).")
    flags.DEFINE_bool("plus_init", False, "Methods that may start from the cell's CE run do ('+init').")


if __name__ == "__main__":
    cli.run(main, define_flags)
