r"""Runs a grid of experiments, skipping finished ones, then writes the report.

Example (the paper's MNIST cells that fit a CPU, 3 seeds)::

    python -m limit_tf.sweep --root=runs/mnist --data_dir=../shared/data \
        --noise=uniform --noise_rates=0.5,0.8 --sizes=1000,10000 \
        --variants=ce,limit_g,limit_l --betas=10 --seeds=0,1,2 \
        --epochs=100 --patience=30

Every run gets its own work dir ``<root>/<dataset>_<noise><p>_n<n>/<run
name>/seed<k>``, where the run name is the variant and its hyperparameters
(``limit_l_beta10``, ``ce_gn_std0.1``, ``dmi_lr0.0001``, ``..._init``; see
``limit_tf.methods.run_name``); the seed is used for the weights and for the
split/noise (``noise_seed``), as the paper averages over 5 training/validation
splits. CE runs first in each cell, so that FW, DMI and LIMIT "+init"
(``--plus_init``) can start from it. Every hyperparameter of the method table
has a grid flag (``--betas``, ``--sigma_qs``, ``--noise_stds``,
``--soft_lambdas``, ``--learning_rates``, ...; default: the single value of
its own flag); ``--paper_grids`` uses the paper's grid for every
hyperparameter the paper searches. All other flags are those of
``limit_tf.main`` and apply to every run. Interrupting the sweep and starting
it again continues where it stopped; a finished run of a different
experiment in one of the work dirs stops the sweep before anything runs.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from limit_tf import cli, methods
from limit_tf import config as config_lib

FLAGS = cli.FLAGS


def cell_name(config: config_lib.ExperimentConfig) -> str:
    n = config.num_train_examples
    return f"{config.dataset}_{config.noise}{config.noise_rate:g}_n{n if n else 'all'}"


def run_dir(root: str | os.PathLike, config: config_lib.ExperimentConfig) -> Path:
    """``<root>/<cell>/<run name>/seed<k>``."""
    name = methods.run_name(config, defaults=config_lib.DEFAULTS)
    return Path(root) / cell_name(config) / name / f"seed{config.seed}"


def hyperparameter_grid(
    config: config_lib.ExperimentConfig, grids: dict[str, list], paper_grids: bool, fixed=()
) -> list[config_lib.ExperimentConfig]:
    """``config`` once per combination of its method's (active) hyperparameter values.

    ``fixed`` names the settings its variant defines (not gridded).
    """
    configs = [config]
    for h in (h for h in config.spec.hyperparameters if h.name not in fixed):
        expanded = []
        for c in configs:
            if not h.active(c.to_dict()):
                expanded.append(c)
                continue
            values = grids.get(h.name) or (list(h.grid) if paper_grids and h.grid else [getattr(c, h.name)])
            expanded += [c.replace(**{h.name: v}) for v in values]
        configs = expanded
    return configs


def sweep_configs(
    base: config_lib.ExperimentConfig,
    *,
    root: str,
    noise_rates,
    sizes,
    variants,
    seeds,
    grids: dict[str, list] | None = None,
    paper_grids: bool = False,
    plus_init: bool = False,
) -> list[config_lib.ExperimentConfig]:
    """The grid as configs, in run order (CE first within each cell and seed).

    Args:
      base: settings shared by all runs.
      root: root directory of the work dirs.
      noise_rates, sizes, seeds: grid axes (a size of None: all training examples).
      variants: names from :data:`limit_tf.methods.VARIANTS`.
      grids: values per hyperparameter name (``{"beta": [1, 10]}``).
      paper_grids: the paper's grid for every hyperparameter it searches and
        ``grids`` does not set.
      plus_init: methods that may start from the cell's CE run do ("+init").
    """
    unknown = [v for v in variants if v not in methods.VARIANTS]
    if unknown:
        raise config_lib.ConfigError(f"--variants: unknown {unknown[0]!r}; allowed: {', '.join(methods.VARIANTS)}.")
    grids = grids or {}

    def starts_from_ce(variant: str) -> bool:
        needs = methods.VARIANTS[variant][0].starts_from_ce
        return needs == "required" or (plus_init and needs == "optional")

    ordered = list(dict.fromkeys(variants))
    needs_ce = any(starts_from_ce(v) for v in ordered)
    if needs_ce and methods.CE not in ordered:
        ordered.insert(0, methods.CE)
    ordered.sort(key=lambda v: v != methods.CE)
    configs = []
    for rate, n, seed in itertools.product(noise_rates, sizes, seeds):
        cell = base.replace(noise_rate=float(rate), num_train_examples=n, seed=int(seed), noise_seed=int(seed))
        ce_start = cell.replace(**methods.variant_settings(methods.CE))
        ce_dir = run_dir(root, ce_start)
        for variant in ordered:
            settings = methods.variant_settings(variant)
            config = cell.replace(**settings, init_from=str(ce_dir) if starts_from_ce(variant) else None)
            if variant == methods.CE and variant not in variants:
                # Only the start of FW / DMI / "+init": the cell's CE, not swept over a grid
                # meant for those methods (--learning_rates for DMI).
                grid = [config]
            else:
                grid = hyperparameter_grid(config, grids, paper_grids, fixed=settings)
                if variant == methods.CE and needs_ce and all(run_dir(root, c) != ce_dir for c in grid):
                    grid.insert(0, ce_start)  # the CE run the others start from, whatever CE's own grid
            configs += [c.replace(workdir=str(run_dir(root, c))) for c in grid]
    return configs


def run_sweep(configs: list[config_lib.ExperimentConfig]) -> list[dict]:
    """Runs the configs in order; finished runs are reported, not rerun."""
    from absl import logging

    from limit_tf import train

    results = []
    for i, config in enumerate(configs, 1):
        logging.info("sweep: run %d/%d: %s", i, len(configs), config.workdir)
        results.append(train.run_experiment(config))
    return results


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
    configs = sweep_configs(
        base,
        root=FLAGS.root,
        noise_rates=_floats("noise_rates", FLAGS.noise_rates) if FLAGS.noise_rates else [base.noise_rate],
        sizes=_int_or_all(FLAGS.sizes) if FLAGS.sizes else [base.num_train_examples],
        variants=FLAGS.variants,
        seeds=[int(v) for v in _floats("seeds", FLAGS.seeds)],
        grids=cli.grids_from_flags(),
        paper_grids=FLAGS.paper_grids,
        plus_init=FLAGS.plus_init,
    )
    from limit_tf import train

    for config in configs:
        # Everything is checked before the first run; the CE dirs for --init_from may not exist yet.
        config.validate(check_init_from=False)
        train.finished_results(config)
        train.check_workdir(config)
    return configs


def main(argv) -> None:
    del argv
    from absl import logging

    from limit_tf import report

    configs = configs_from_flags()
    logging.info("sweep: %d runs under %s", len(configs), FLAGS.root)
    run_sweep(configs)
    markdown, _ = report.write_report(FLAGS.root)
    print(markdown)
    print(f"report: {Path(FLAGS.root) / 'report.md'} (+ report.csv and PNG curves)")


def define_flags() -> None:
    from absl import flags

    cli.define_config_flags(exclude=("workdir",))
    cli.define_grid_flags()
    flags.DEFINE_string("root", "runs/sweep", "Root directory of the sweep's work dirs.")
    flags.DEFINE_list("noise_rates", [], "Noise rates (default: --noise_rate).")
    flags.DEFINE_list("sizes", [], "Training-set sizes n, or 'all' (default: --num_train_examples).")
    flags.DEFINE_list("variants", list(methods.DEFAULT_VARIANTS), f"Method variants: {', '.join(methods.VARIANTS)}.")
    flags.DEFINE_list("seeds", ["0"], "Seeds (weights and split/noise).")
    flags.DEFINE_bool("paper_grids", False, "Use the paper's grid for every hyperparameter it searches.")
    flags.DEFINE_bool("plus_init", False, "Methods that may start from the cell's CE run do ('+init').")


if __name__ == "__main__":
    cli.run(main, define_flags)
