"""Grids of experiments: the configs of a sweep over cells, variants, hyperparameters and seeds.

The library side of ``python -m limit_tf.sweep`` (which adds flags and the
report), used by the demo and the benchmarks. Every run gets its own work
dir ``<root>/<dataset>_<noise><p>_n<n>/<run name>/seed<k>``, where the run
name is the variant and its hyperparameters (``limit_l_beta10``,
``ce_gn_std0.1``, ``dmi_lr0.0001``, ``..._init``; see
:func:`limit_tf.methods.run_name`). CE runs first in each cell, so that FW,
DMI and LIMIT "+init" can start from it.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from limit_tf import config as config_lib
from limit_tf import methods


def cell_name(config: config_lib.ExperimentConfig) -> str:
    n = config.num_train_examples
    return f"{config.dataset}_{config.noise}{config.noise_rate:g}_n{n if n else 'all'}"


def run_dir(root: str | os.PathLike, config: config_lib.ExperimentConfig) -> Path:
    """``<root>/<cell>/<run name>/seed<k>``."""
    settings, defaults = config_lib.naming(config)
    name = methods.run_name(settings, defaults=defaults)
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
    noise_seed: int | None = None,
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
      noise_seed: None (the paper's protocol: a run's seed also draws its
        split, subset and noise, as the paper averages over splits), or the
        one noise seed of every run.
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
        cell = base.replace(
            noise_rate=float(rate),
            num_train_examples=n,
            seed=int(seed),
            noise_seed=int(seed) if noise_seed is None else int(noise_seed),
        )
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
