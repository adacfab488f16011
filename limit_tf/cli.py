"""What every command-line entry point shares.

- Flags generated from :class:`~limit_tf.config.ExperimentConfig`: one flag
  per field, with the field's name, default and help, so the runner, the
  sweep, the tuner, the demo and the benchmarks accept the same settings
  with the same meaning (:func:`define_config_flags`, :func:`config_from_flags`).
- Grid flags generated from the method table: one list flag per
  hyperparameter (``--betas``, ``--sigma_qs``, ``--noise_stds``, ...), used
  by the sweep and the tuner (:func:`define_grid_flags`, :func:`grids_from_flags`).
- Errors: bad input ends in one line on stderr and exit status 2, never a
  traceback (:func:`fail`, :func:`run`).
- TensorFlow's C++ start-up lines are silenced: importing this module sets
  ``TF_CPP_MIN_LOG_LEVEL=2`` unless the user set it, before any entry point
  imports TensorFlow.

Library code never imports this module.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import logging as python_logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from limit_tf import config as config_lib  # noqa: E402
from limit_tf import methods, workdir  # noqa: E402
from limit_tf.data import formats, registry, user  # noqa: E402

FLAGS = flags.FLAGS

# Errors caused by what the user typed or gave: one line, exit status 2.
USER_ERRORS = (
    config_lib.ConfigError,
    registry.DataNotFoundError,
    formats.DataFileError,
    user.UserDataError,
    workdir.CorruptFileError,
)


def fail(message: str, status: int = 2) -> None:
    """Prints ``error: <message>`` as one line on stderr and exits."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(status)


def _quiet_tensorflow_info(record: python_logging.LogRecord) -> bool:
    """Drops INFO (and lower) records that TensorFlow's modules log through absl."""
    return record.levelno > python_logging.INFO or f"{os.sep}tensorflow{os.sep}" not in record.pathname


def quiet_tensorflow_logs() -> None:
    """Keeps TensorFlow's own INFO lines (one per checkpoint written, ...) from drowning the progress lines.

    Some come through its logger, some through absl's (the checkpoint saver's "Sharding callback").
    """
    python_logging.getLogger("tensorflow").setLevel(python_logging.WARNING)
    absl_logger = python_logging.getLogger("absl")
    if _quiet_tensorflow_info not in absl_logger.filters:
        absl_logger.addFilter(_quiet_tensorflow_info)


def run(main: Callable[[list[str]], None], define: Callable[[], None] | None = None) -> None:
    """Defines the flags, parses them and runs ``main``; user errors end in one line and status 2."""
    if define is not None:
        define()
    quiet_tensorflow_logs()

    def guarded(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments {argv[1:]}; all settings are --flags.")
        try:
            main(argv)
        except USER_ERRORS as e:
            fail(str(e))

    app.run(guarded)


# --------------------------------------------------------------------------
# Flags from the config.


def _flag_kind(field: dataclasses.Field) -> str:
    kind = str(field.type).replace(" ", "")
    return kind.removesuffix("|None")


def define_config_flags(
    flag_values: flags.FlagValues = FLAGS, *, exclude: Sequence[str] = (), defaults: dict | None = None
) -> None:
    """Defines one flag per :class:`ExperimentConfig` field (except ``exclude``).

    Args:
      flag_values: where to define them.
      exclude: fields that the entry point sets itself (e.g. the sweep's work dirs).
      defaults: other defaults for some fields (an entry point's own,
        e.g. the demo's dataset); everything else keeps the config's.
    """
    defaults = defaults or {}
    for field in dataclasses.fields(config_lib.ExperimentConfig):
        if field.name in exclude:
            continue
        default = defaults.get(field.name, field.default)
        help_text = field.metadata.get("help", "")
        kind = _flag_kind(field)
        if kind == "bool":
            flags.DEFINE_bool(field.name, default, help_text, flag_values=flag_values)
        elif kind == "int":
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values)
        elif kind == "float":
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values)
        elif kind.startswith("tuple"):
            flags.DEFINE_list(field.name, list(default), help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(field.name, default or None, help_text, flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = FLAGS, **overrides) -> config_lib.ExperimentConfig:
    """Reads the parsed flags once into a frozen config (fields without a flag keep their default)."""
    values = {}
    for field in dataclasses.fields(config_lib.ExperimentConfig):
        if field.name in flag_values:
            values[field.name] = flag_values[field.name].value
    if values.get("workdir") is None:
        values["workdir"] = ""
    if "devices" in values:
        values["devices"] = tuple(values["devices"] or ())
    values.update(overrides)
    return config_lib.ExperimentConfig.from_dict(values)


# --------------------------------------------------------------------------
# Grid flags from the method table.


def hyperparameters() -> dict[str, methods.Hyperparameter]:
    """Every hyperparameter of the method table, by name (the first spec's version)."""
    out = {}
    for spec in methods.METHODS.values():
        for h in spec.hyperparameters:
            out.setdefault(h.name, h)
    return out


def grid_flag(name: str) -> str:
    """The list flag of a hyperparameter: ``beta`` -> ``betas``."""
    return f"{name}_grid" if name.endswith("s") else f"{name}s"


def define_grid_flags(flag_values: flags.FlagValues = FLAGS, *, what: str = "values") -> None:
    """One list flag per hyperparameter of the method table (``--betas=0,1,10`` ...)."""
    for name, h in hyperparameters().items():
        shown = f"; the paper's grid for some methods: {','.join(f'{v:g}' for v in h.grid)}" if h.grid else ""
        flags.DEFINE_list(
            grid_flag(name),
            [],
            f"{name} {what} (comma-separated; default: --{name}{shown}).",
            flag_values=flag_values,
        )


def parse_value(h: methods.Hyperparameter, text: str):
    """One grid value from its text, as the hyperparameter's type; ConfigError if it is not one."""
    flag = grid_flag(h.name)
    try:
        if h.kind == "bool":
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            value = lowered in ("true", "1")
        elif h.kind == "int":
            value = int(text)
        elif h.kind == "float":
            value = float(text)
        else:
            value = text.strip()
    except ValueError:
        raise config_lib.ConfigError(f"--{flag}: {text!r} is not a {h.kind} value.") from None
    problem = dataclasses.replace(h, exclusive_minimum=False).problem(value) if h.kind != "choice" else None
    if h.kind == "choice" and value not in h.choices:
        problem = f"allowed: {', '.join(h.choices)}"
    if problem:
        raise config_lib.ConfigError(f"--{flag}: {text!r} is not allowed: {problem}.")
    return value


def grids_from_flags(flag_values: flags.FlagValues = FLAGS) -> dict[str, list]:
    """``{hyperparameter: [values]}`` for every grid flag the user gave."""
    grids = {}
    for name, h in hyperparameters().items():
        texts = flag_values[grid_flag(name)].value
        if texts:
            grids[name] = [parse_value(h, t) for t in texts]
    return grids


def log_config(config: config_lib.ExperimentConfig) -> None:
    logging.info("config: %s", config.to_json().replace("\n", " "))
