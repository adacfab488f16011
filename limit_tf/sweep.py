r"""Runs a grid of experiments, skipping finished ones, then writes the report.

Example (the paper's MNIST cells that fit a CPU, 3 seeds)::

    python -m limit_tf.sweep --root=runs/mnist --data_dir=../shared/data \
        --noise=uniform --noise_rates=0.5,0.8 --sizes=1000,10000 \
        --variants=ce,limit_g,limit_l --betas=10 --seeds=0,1,2 \
        --epochs=100 --patience=30

Every run gets its own work dir ``<root>/<dataset>_<noise><p>_n<n>/<variant>
[_beta<b>][_sigma<s>][_init]/seed<k>``; the seed is used for the weights and
for the split/noise (``noise_seed``), as the paper averages over 5
training/validation splits. CE runs first in each cell, so that FW, DMI and
LIMIT "+init" (``--plus_init``) can start from it. Interrupting the sweep and
starting it again continues where it stopped. All other flags are those of
``limit_tf.main`` and apply to every run.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from limit_tf import config as config_lib  # noqa: E402
from limit_tf import main as main_lib  # noqa: E402
from limit_tf import report  # noqa: E402

FLAGS = flags.FLAGS


def run_dir(
    root: str | os.PathLike, config: config_lib.ExperimentConfig, n: int | None, plus_init: bool = False
) -> Path:
    variant = report.variant_of({"method": config.method, "predictor": config.predictor, "sample": config.sample})
    name = variant
    if config.method in ("limit", "soft_reg"):
        name += f"_beta{config.beta:g}"
    if config.method == "limit" and config.sample:
        name += f"_sigma{config.sigma_q:g}"
    if config.method == "soft_reg":
        name += f"_lambda{config.soft_lambda:g}"
    if config.method in ("ce_gn", "ce_ln"):
        name += f"_std{config.noise_std:g}"
    if plus_init:
        name += "_init"
    cell = f"{config.dataset}_{config.noise}{config.noise_rate:g}_n{n if n else 'all'}"
    return Path(root) / cell / name / f"seed{config.seed}"


def sweep_configs(
    base: config_lib.ExperimentConfig,
    *,
    root: str,
    noise_rates,
    sizes,
    variants,
    seeds,
    betas=(None,),
    sigma_qs=(None,),
    plus_init: bool = False,
) -> list[config_lib.ExperimentConfig]:
    """The grid as configs, in run order (CE first within each cell and seed).

    Args:
      base: settings shared by all runs.
      root: root directory of the work dirs.
      noise_rates, sizes, seeds: grid axes (a size of None: all training examples).
      variants: names from :data:`limit_tf.report.VARIANTS`.
      betas: LIMIT / soft-reg betas (None: the base config's).
      sigma_qs: sampling stds for the "+S" variants (None: the base config's).
      plus_init: LIMIT variants start q from the cell's CE run ("+init").
    """
    unknown = [v for v in variants if v not in report.VARIANTS]
    if unknown:
        raise config_lib.ConfigError(f"--variants: unknown {unknown[0]!r}; allowed: {', '.join(report.VARIANTS)}.")
    needs_ce = any(report.VARIANTS[v]["method"] in config_lib.NEEDS_INIT for v in variants) or (
        plus_init and any(report.VARIANTS[v]["method"] == "limit" for v in variants)
    )
    ordered = list(variants)
    if needs_ce and "ce" not in ordered:
        ordered.insert(0, "ce")
    ordered.sort(key=lambda v: v != "ce")
    configs = []
    for rate, n, seed in itertools.product(noise_rates, sizes, seeds):
        cell = base.replace(noise_rate=float(rate), num_train_examples=n, seed=int(seed), noise_seed=int(seed))
        ce_dir = run_dir(root, cell.replace(**report.VARIANTS["ce"]), n)
        for variant in ordered:
            settings = report.VARIANTS[variant]
            method = settings["method"]
            beta_grid = betas if method in ("limit", "soft_reg") else (None,)
            sigma_grid = sigma_qs if settings.get("sample") else (None,)
            for beta, sigma in itertools.product(beta_grid, sigma_grid):
                config = cell.replace(**settings)
                if beta is not None:
                    config = config.replace(beta=float(beta))
                if sigma is not None:
                    config = config.replace(sigma_q=float(sigma))
                init = method in config_lib.NEEDS_INIT or (plus_init and method == "limit")
                config = config.replace(init_from=str(ce_dir) if init else None)
                workdir = run_dir(root, config, n, plus_init=plus_init and method == "limit")
                configs.append(config.replace(workdir=str(workdir)))
    return configs


def run_sweep(configs: list[config_lib.ExperimentConfig]) -> list[dict]:
    """Runs the configs in order; finished runs are reported, not rerun."""
    from limit_tf import train

    results = []
    for i, config in enumerate(configs, 1):
        logging.info("sweep: run %d/%d: %s", i, len(configs), config.workdir)
        results.append(train.run_experiment(config))
    return results


def _int_or_all(values) -> list[int | None]:
    return [None if v in ("all", "") else int(v) for v in values]


def main(argv) -> None:
    if len(argv) > 1:
        main_lib.fail(f"unexpected arguments {argv[1:]}; all settings are --flags.")
    try:
        base = main_lib.config_from_flags(workdir="sweep")
        configs = sweep_configs(
            base,
            root=FLAGS.root,
            noise_rates=[float(v) for v in FLAGS.noise_rates] if FLAGS.noise_rates else [base.noise_rate],
            sizes=_int_or_all(FLAGS.sizes) if FLAGS.sizes else [base.num_train_examples],
            variants=FLAGS.variants,
            seeds=[int(v) for v in FLAGS.seeds],
            betas=[float(v) for v in FLAGS.betas] if FLAGS.betas else [None],
            sigma_qs=[float(v) for v in FLAGS.sigma_qs] if FLAGS.sigma_qs else [None],
            plus_init=FLAGS.plus_init,
        )
        for config in configs:
            # Validate everything before the first run; CE dirs for --init_from may not exist yet.
            config.replace(
                init_from=None, method="ce" if config.method in config_lib.NEEDS_INIT else config.method
            ).validate()
    except (config_lib.ConfigError, ValueError) as e:
        main_lib.fail(str(e))
    logging.info("sweep: %d runs under %s", len(configs), FLAGS.root)
    run_sweep(configs)
    markdown, _ = report.write_report(FLAGS.root)
    print(markdown)
    print(f"report: {Path(FLAGS.root) / 'report.md'} (+ report.csv and PNG curves)")


def define_flags() -> None:
    main_lib.define_flags()
    flags.DEFINE_string("root", "runs/sweep", "Root directory of the sweep's work dirs.")
    flags.DEFINE_list("noise_rates", [], "Noise rates (default: --noise_rate).")
    flags.DEFINE_list("sizes", [], "Training-set sizes n, or 'all' (default: --num_train_examples).")
    flags.DEFINE_list("variants", ["ce", "limit_l"], f"Method variants: {', '.join(report.VARIANTS)}.")
    flags.DEFINE_list("seeds", ["0"], "Seeds (weights and split/noise).")
    flags.DEFINE_list("betas", [], "Betas for LIMIT / soft_reg (default: --beta).")
    flags.DEFINE_list("sigma_qs", [], "sigma_q values for the '+S' variants (default: --sigma_q).")
    flags.DEFINE_bool("plus_init", False, "LIMIT variants start q from the cell's CE run ('+init').")


if __name__ == "__main__":
    define_flags()
    app.run(main)
