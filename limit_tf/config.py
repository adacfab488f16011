"""The frozen configuration of one experiment.

Entry points read their flags once into an :class:`ExperimentConfig`; the
library takes the config and never reads flags. Field names are the flag
names, so every validation error names the flag a user typed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

# Kept here (not imported from the modules that implement them) so that
# validating a config is cheap and does not import TensorFlow.
DATASET_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100")
NOISE_NAMES = ("none", "uniform", "symmetric", "pair", "asymmetric", "next_class")
METHOD_NAMES = ("ce", "mae", "mse", "gce", "fw", "dmi", "ce_gn", "ce_ln", "soft_reg", "limit")
PREDICTOR_NAMES = ("gaussian", "laplace", "ce")
ARCHITECTURE_NAMES = ("mnist_cnn", "mlp", "resnet34", "resnet50")
STRATEGY_NAMES = ("default", "mirrored", "multi_worker")
SOURCE_NAMES = ("auto", "local", "tfds")
DEFAULT_ARCHITECTURE = {
    "mnist": "mnist_cnn",
    "fashion_mnist": "mnist_cnn",
    "cifar10": "resnet34",
    "cifar100": "resnet34",
}
# Methods that start from a trained cross-entropy model (paper, Sec. 4).
NEEDS_INIT = ("fw", "dmi")


class ConfigError(ValueError):
    """An invalid setting; the message names the flag, the value and what is allowed."""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one run. Defaults follow the paper's MNIST protocol."""

    workdir: str = ""
    dataset: str = "mnist"
    data_dir: str | None = None
    data_source: str = "auto"
    allow_download: bool = False
    noise: str = "uniform"
    noise_rate: float = 0.0
    num_train_examples: int | None = None
    clean_validation: bool = False
    method: str = "ce"
    beta: float = 0.0
    sigma_q: float = 0.0
    predictor: str = "gaussian"
    sample: bool = False
    warmup_epochs: int = 0
    init_from: str | None = None
    gce_q: float = 0.7
    noise_std: float = 0.0
    soft_lambda: float = 0.01
    architecture: str | None = None
    epochs: int = 400
    patience: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    noise_seed: int = 0
    track_test_accuracy: bool = False
    jit_compile: bool = False
    deterministic: bool = False
    strategy: str = "default"
    devices: tuple[str, ...] = ()

    @property
    def resolved_architecture(self) -> str:
        return self.architecture or DEFAULT_ARCHITECTURE[self.dataset]

    def validate(self) -> ExperimentConfig:
        """Checks every field; raises :class:`ConfigError` on the first bad one."""
        _choice("dataset", self.dataset, DATASET_NAMES)
        _choice("data_source", self.data_source, SOURCE_NAMES)
        _choice("noise", self.noise, NOISE_NAMES)
        _choice("method", self.method, METHOD_NAMES)
        _choice("predictor", self.predictor, PREDICTOR_NAMES)
        _choice("strategy", self.strategy, STRATEGY_NAMES)
        if self.architecture is not None:
            _choice("architecture", self.architecture, ARCHITECTURE_NAMES)
        if not self.workdir:
            raise ConfigError("--workdir is required: a directory for this run's outputs.")
        if not (0.0 <= self.noise_rate < 1.0) or math.isnan(self.noise_rate):
            raise ConfigError(f"--noise_rate={self.noise_rate!r} is not allowed: it must be in [0, 1).")
        if self.noise == "none" and self.noise_rate != 0:
            raise ConfigError(f"--noise_rate={self.noise_rate!r} is not allowed with --noise=none: use 0.")
        if self.noise == "pair" and self.dataset != "cifar10":
            raise ConfigError(
                f"--noise=pair is defined for cifar10 only, not --dataset={self.dataset}; use next_class."
            )
        if self.noise == "asymmetric" and self.dataset == "cifar100":
            raise ConfigError("--noise=asymmetric has no class map for --dataset=cifar100; use next_class.")
        _non_negative("beta", self.beta)
        _non_negative("sigma_q", self.sigma_q)
        _non_negative("noise_std", self.noise_std)
        _non_negative("soft_lambda", self.soft_lambda)
        if self.sample and self.sigma_q <= 0:
            raise ConfigError(f"--sigma_q={self.sigma_q!r} is not allowed with --sample: it must be > 0.")
        if self.method in ("ce_gn", "ce_ln") and self.noise_std <= 0:
            raise ConfigError(
                f"--noise_std={self.noise_std!r} is not allowed with --method={self.method}: it must be > 0."
            )
        if not 0.0 < self.gce_q <= 1.0:
            raise ConfigError(f"--gce_q={self.gce_q!r} is not allowed: it must be in (0, 1].")
        _positive_int("epochs", self.epochs)
        _positive_int("patience", self.patience)
        _positive_int("batch_size", self.batch_size)
        _non_negative_int("warmup_epochs", self.warmup_epochs)
        _non_negative_int("seed", self.seed)
        _non_negative_int("noise_seed", self.noise_seed)
        if self.num_train_examples is not None:
            _positive_int("num_train_examples", self.num_train_examples)
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"--learning_rate={self.learning_rate!r} is not allowed: it must be a finite number > 0.")
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"--warmup_epochs={self.warmup_epochs} is not allowed: it must be < --epochs={self.epochs}."
            )
        if self.init_from is not None:
            _check_init_dir(self.init_from)
        elif self.method in NEEDS_INIT:
            raise ConfigError(f"--init_from is required with --method={self.method}: the work dir of a trained CE run.")
        if self.devices and self.strategy != "mirrored":
            raise ConfigError(
                f"--devices={','.join(self.devices)} is not allowed with --strategy={self.strategy}: "
                "it names the devices of --strategy=mirrored (multi_worker uses every local GPU of each worker)."
            )
        if self.strategy == "multi_worker":
            check_tf_config()
        if self.jit_compile and self.strategy != "default":
            raise ConfigError(
                f"--jit_compile is not supported with --strategy={self.strategy} (keras-team/keras#19005)."
            )
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r}; allowed: {', '.join(sorted(known))}.")
        values = dict(values)
        if "devices" in values:
            values["devices"] = tuple(values["devices"])
        return cls(**values)

    def replace(self, **changes) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)


TF_CONFIG_EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'


def check_tf_config(environ=None) -> dict:
    """Validates ``$TF_CONFIG`` for ``--strategy=multi_worker``; returns it parsed.

    Raises:
      ConfigError: it is missing, not JSON, or names no cluster or a task
        that is not in the cluster.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG", "")
    hint = f"e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}' (see docs/distributed.md)"
    if not raw.strip():
        raise ConfigError(f"--strategy=multi_worker reads the cluster from $TF_CONFIG, which is not set; {hint}.")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"$TF_CONFIG is not valid JSON ({e.msg} at character {e.pos}); {hint}.") from None
    cluster = value.get("cluster") if isinstance(value, dict) else None
    task = value.get("task") if isinstance(value, dict) else None
    if not isinstance(cluster, dict) or not any(cluster.get(k) for k in ("worker", "chief")):
        raise ConfigError(f"$TF_CONFIG has no 'cluster' with 'worker' (or 'chief') addresses; {hint}.")
    if not isinstance(task, dict) or "type" not in task:
        raise ConfigError(f"$TF_CONFIG has no 'task' with a 'type' and an 'index'; {hint}.")
    members = cluster.get(task["type"])
    index = task.get("index", 0)
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise ConfigError(
            f"$TF_CONFIG task {task.get('type')!r} index {index!r} is not in its cluster "
            f"({ {k: len(v) for k, v in cluster.items() if isinstance(v, list)} } addresses); {hint}."
        )
    return value


# Files a finished run leaves in its work dir (the ones --init_from reads).
BEST_WEIGHTS = "best.weights.h5"
RESULTS = "results.json"
CONFIG = "config.json"


def _check_init_dir(path: str) -> None:
    p = Path(path)
    if not p.is_dir():
        raise ConfigError(f"--init_from={path!r} is not a directory: give the work dir of a finished CE run.")
    if not (p / BEST_WEIGHTS).is_file():
        raise ConfigError(
            f"--init_from={path!r} holds no trained model ({BEST_WEIGHTS} is missing): finish that run first."
        )
    if (p / CONFIG).is_file():
        method = json.loads((p / CONFIG).read_text()).get("method")
        if method != "ce":
            raise ConfigError(
                f"--init_from={path!r} is a {method!r} run: FW, DMI and LIMIT '+init' start from a CE run."
            )


def _choice(flag: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"--{flag}={value!r} is not allowed; allowed: {', '.join(allowed)}.")


def _non_negative(flag: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"--{flag}={value!r} is not allowed: it must be a finite number >= 0.")


def _positive_int(flag: str, value) -> None:
    if int(value) != value or value < 1:
        raise ConfigError(f"--{flag}={value!r} is not allowed: it must be an integer >= 1.")


def _non_negative_int(flag: str, value) -> None:
    if int(value) != value or value < 0:
        raise ConfigError(f"--{flag}={value!r} is not allowed: it must be an integer >= 0.")
