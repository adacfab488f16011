"""What a run's settings name on disk: checked where runs are opened, not in the config.

:meth:`limit_tf.config.ExperimentConfig.validate` checks values only and
reads no file; :func:`check` checks the paths a config names: your data
files (``--dataset``, ``--test_data``), the work dir (it can be created),
``--init_from`` (a finished CE run of the same dataset and architecture),
``--weights`` (a file, for a ``keras:`` body)
and ``--clean_from`` (a finished run on the same training examples). The
runner, the sweep, the demo and the tuner call it before anything is
written. TensorFlow-free.
"""

from __future__ import annotations

from pathlib import Path

from limit_tf import methods, workdir
from limit_tf.config import CLEAN_MUST_MATCH, ConfigError, ExperimentConfig
from limit_tf.data import registry, user


def check(config: ExperimentConfig, *, init_from: bool = True) -> ExperimentConfig:
    """Raises :class:`ConfigError` (one line) for the first path of ``config`` that is not usable; returns it.

    Args:
      config: a validated config.
      init_from: also check ``--init_from``'s run (a sweep checks its runs
        before their CE runs exist, so it skips this).
    """
    if config.user_data:
        kind = user.parse(config.dataset)[0]
        problem = user.problem(config.dataset)
        if problem:
            raise ConfigError(f"--dataset={config.dataset!r}: {problem}.")
        if config.test_data and kind != "tfds":
            problem = user.problem(f"{kind}:{config.test_data}")
            if problem:
                raise ConfigError(f"--test_data={config.test_data!r}: {problem}.")
    problem = workdir.unusable_dir_problem(config.workdir)
    if problem:
        raise ConfigError(f"--workdir={config.workdir!r} {problem}.")
    weights_file = methods.backbone_of(config.architecture) and config.weights not in ("imagenet", "none")
    if weights_file and not Path(config.weights).expanduser().is_file():
        raise ConfigError(
            f"--weights={config.weights!r} is not a file: give the weights file of "
            f"{config.architecture}, --weights=none (random) or --weights=imagenet (with --allow_download)."
        )
    if init_from and config.init_from is not None:
        _check_init_from(config)
    if config.clean_from is not None:
        _check_clean_from(config)
    return config


def _check_init_from(config: ExperimentConfig) -> None:
    problem = workdir.init_source_problem(config.init_from)
    if problem:
        raise ConfigError(f"--init_from={config.init_from!r} {problem}")
    source = workdir.RunDir(config.init_from).config() or {}
    their_dataset = source.get("dataset", config.dataset)
    their_architecture = source.get("architecture") or (
        registry.DATASETS[their_dataset].architecture if their_dataset in registry.DATASETS else None
    )
    for what, mine, other in (
        ("dataset", config.dataset, their_dataset),
        ("architecture", config.resolved_architecture, their_architecture or config.resolved_architecture),
    ):
        if mine != other:
            raise ConfigError(
                f"--init_from={config.init_from!r} is a run with {what} {other!r}; this run's {what} is {mine!r}: "
                "start from a CE run of the same dataset and architecture."
            )


def _check_clean_from(config: ExperimentConfig) -> None:
    run = workdir.RunDir(config.clean_from)
    if not run.finished:
        raise ConfigError(f"--clean_from={config.clean_from!r} is not a finished run (no {workdir.RESULTS}).")
    source = run.config() or {}
    for name in CLEAN_MUST_MATCH:
        if name in source and source[name] != getattr(config, name):
            raise ConfigError(
                f"--clean_from={config.clean_from!r} trained on other data ({name}={source[name]!r}, here "
                f"{getattr(config, name)!r}): cleaning needs the same training examples."
            )
