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
import errno  # noqa: E402
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
    workdir.WorkdirBusyError,
)


def fail(message: str, status: int = 2) -> None:
    """Prints ``error: <message>`` as one line on stderr and exits."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(status)


def storage_failure(error: BaseException, workdir_path: str) -> str | None:
    """One line for a failure to write the work dir (read-only, disk full), or None for other errors.

    TensorFlow's writers raise ``PermissionDeniedError`` / ``ResourceExhaustedError``
    (matched by name: this module does not import TensorFlow), Python's an ``OSError``.
    """
    name = type(error).__name__
    if isinstance(error, OSError):
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            return None
        cause = error.strerror or str(error)
        where = error.filename or workdir_path
    elif name in ("PermissionDeniedError", "ResourceExhaustedError") and "tensorflow" in type(error).__module__:
        message = getattr(error, "message", str(error))
        if name == "ResourceExhaustedError" and "space" not in message.lower():
            return None  # out of memory, not out of disk
        cause = "permission denied" if name == "PermissionDeniedError" else "no space left on device"
        where = workdir_path
    else:
        return None
    return (
        f"cannot write {where} ({cause}); the run in --workdir={workdir_path!r} stopped at its last finished epoch: "
        "free space or fix the permissions, then rerun the same command to resume."
    )


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


# --help shows the config's flags in these groups (every field is in one; tests check it), then the
# command's own flags.
FLAG_GROUPS = {
    "Data": (
        "dataset",
        "test_data",
        "label_column",
        "augment",
        "image_size",
        "validation_fraction",
        "num_train_examples",
        "data_dir",
        "data_source",
        "allow_download",
        "verify_data",
    ),
    # The methods' options come from the method table (learning_rate is listed under Training).
    "Method": (
        "method",
        *(h.name for h in methods.options() if h.name != "learning_rate"),
        "init_from",
        "architecture",
        "weights",
        "freeze_backbone",
    ),
    "Training": ("epochs", "patience", "batch_size", "optimizer", "learning_rate", "lr_schedule", "seed"),
    "Cleaning with a finished run's detection": ("clean_from", "clean", "clean_score"),
    "Label noise injected on purpose (benchmarks)": ("noise", "noise_rate", "noise_seed", "clean_validation"),
    "Output and execution": (
        "workdir",
        "track_test_accuracy",
        "jit_compile",
        "deterministic",
        "strategy",
        "devices",
        "cluster_timeout",
    ),
}
HELP_ARGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")
OWN_MODULES = ("limit_tf", "tuner", "benchmarks", "__main__")


def _flag_line(flag) -> str:
    default = flag.default
    if isinstance(default, list):
        default = ",".join(map(str, default))
    shown = "" if default in (None, "", []) else f" (default: {default})"
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    return f"  {name}{shown}\n      {flag.help}"


def help_text(flag_values: flags.FlagValues = FLAGS, doc: str | None = None) -> str:
    """This command's flags, grouped (absl's ``--helpfull`` also lists TensorFlow's and absl's own)."""
    own = {}
    for module, module_flags in flag_values.flags_by_module_dict().items():
        if module.split(".")[0] in OWN_MODULES or "limit_tf" in module or "benchmarks" in module:
            own.update({f.name: f for f in module_flags})
    out = [doc.strip() + "\n"] if doc else []
    listed = set()
    for group, names in FLAG_GROUPS.items():
        present = [own[n] for n in names if n in own]
        if present:
            out.append(f"{group}:")
            out += [_flag_line(f) for f in present]
            out.append("")
            listed.update(f.name for f in present)
    rest = sorted((f for name, f in own.items() if name not in listed), key=lambda f: f.name)
    if rest:
        out.append("Options of this command:" if listed else "Options:")
        out += [_flag_line(f) for f in rest]
        out.append("")
    out.append("--helpfull lists absl's and TensorFlow's flags too.")
    return "\n".join(out)


def run(main: Callable[[list[str]], None], define: Callable[[], None] | None = None) -> None:
    """Defines the flags, parses them and runs ``main``; user errors end in one line and status 2.

    ``--help`` prints this command's flags by group at once, without importing TensorFlow.
    """
    if define is not None:
        define()
    if any(arg in HELP_ARGS for arg in sys.argv[1:]):
        main_module = sys.modules.get("__main__")
        print(help_text(FLAGS, getattr(main_module, "__doc__", None)))
        sys.exit(0)
    quiet_tensorflow_logs()

    def guarded(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments {argv[1:]}; all settings are --flags.")
        import limit_tf

        limit_tf.import_tensorflow()
        try:
            main(argv)
        except USER_ERRORS as e:
            fail(str(e))
        except KeyboardInterrupt:
            print("interrupted; rerun the same command to resume.", file=sys.stderr)
            sys.exit(130)

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
    rates_given = "noise_rates" in flag_values and flag_values["noise_rates"].value
    if (
        "noise" in flag_values
        and "noise_rate" in flag_values  # commands that set the rate themselves (a benchmark's cells) keep --noise
        and not rates_given
        and not flag_values["noise"].present
        and "noise" not in overrides
        and not values.get("noise_rate")
    ):
        values["noise"] = "none"  # no noise asked for: config.json says so (uniform at rate 0 is the same)
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


# Flags that several entry points take, each with one meaning, declared here once
# (docs/usage.md, "Flags": the table). kind, help.
SHARED_FLAGS: dict[str, tuple[str, str]] = {
    "root": ("string", "The directory that holds the runs (one work dir per run below it)."),
    "seeds": (
        "integer",
        "How many seeds: runs k = 0 .. N-1 use seed k for the weights and for the split, subset and noise "
        "(the paper averages over splits).",
    ),
    "noise_rates": ("list", "Noise rates to run (comma-separated)."),
    "cells": ("list", "Cells of the paper's MNIST table to run, as p:n (noise rate : training examples)."),
    "variants": ("list", f"Method variants (comma-separated): {', '.join(methods.VARIANTS)}."),
    "paper_grids": (
        "bool",
        "Run every hyperparameter the paper searches over the paper's grid (the grid flags, e.g. --betas=10, "
        "narrow it); --nopaper_grids: each at its own flag's value.",
    ),
    "out": ("string", "Where this command writes its output"),
    "run": ("string", "The work dir of a finished (or unfinished) run of limit_tf.main, to read."),
}


def define_shared_flags(flag_values: flags.FlagValues = FLAGS, **defaults) -> None:
    """Defines the shared flags named by ``defaults`` (name=default), with their one meaning (:data:`SHARED_FLAGS`)."""
    define = {
        "string": flags.DEFINE_string,
        "integer": flags.DEFINE_integer,
        "list": flags.DEFINE_list,
        "bool": flags.DEFINE_bool,
    }
    for name, default in defaults.items():
        kind, help_text = SHARED_FLAGS[name]
        if name == "out":  # (default, what is written there)
            default, what = default
            help_text = f"{help_text}: {what}"
        define[kind](name, default, help_text, flag_values=flag_values)


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
    searchable = tuple(c for c in h.choices if c != methods.AUTO)  # a grid compares values, not the recipe
    if h.kind == "choice" and value not in searchable:
        problem = f"allowed: {', '.join(searchable)}"
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


def changed_settings(config: config_lib.ExperimentConfig) -> list[str]:
    """``--name=value`` for every setting that differs from the config's default."""
    out = []
    for name, value in dataclasses.asdict(config).items():
        if value == config_lib.DEFAULTS[name] or (name == "devices" and not value):
            continue
        if isinstance(value, bool):
            out.append(f"--{name}" if value else f"--no{name}")
        else:
            out.append(f"--{name}={','.join(value) if isinstance(value, tuple) else value}")
    return out


def log_config(config: config_lib.ExperimentConfig) -> None:
    """Logs the settings that differ from the defaults, one per line (config.json holds them all)."""
    logging.info(
        "settings (all others at their defaults; config.json has every one):\n  %s",
        "\n  ".join(changed_settings(config)),
    )
