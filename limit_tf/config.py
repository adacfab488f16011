"""The frozen configuration of one experiment.

Entry points read their flags once into an :class:`ExperimentConfig`; the
library takes the config and never reads flags. Field names are the flag
names (:mod:`limit_tf.cli` defines one flag per field, with the help text
below), so every validation error names the flag a user typed. Method
hyperparameters are validated from the method table
(:mod:`limit_tf.methods`). Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from limit_tf import methods
from limit_tf.data import cifar_n, registry, user

NOISE_NAMES = ("none", "uniform", "symmetric", "pair", "asymmetric", "next_class")
ARCHITECTURE_NAMES = methods.ARCHITECTURES
AUTO_ARCHITECTURE = "auto"
AUTO = methods.AUTO
STRATEGY_NAMES = ("default", "mirrored", "multi_worker")
SOURCE_NAMES = ("auto", "local", "tfds")
CLEAN_MODES = ("drop", "relabel")
AUGMENT_MODES = ("auto", "on", "off")
LR_SCHEDULES = ("auto", "constant", "cosine")
OPTIMIZERS = ("adam", "sgd")
# What a --clean_from run must share with this one for its flags to index the same examples.
CLEAN_MUST_MATCH = (
    "dataset",
    "test_data",
    "validation_fraction",
    "noise",
    "noise_rate",
    "num_train_examples",
    "clean_validation",
    "noise_seed",
)

# Settings that say where and how a run executes, not what it computes: a
# rerun that differs only in these continues the same experiment.
EXECUTION_FIELDS = frozenset(
    {
        "workdir",
        "data_dir",
        "data_source",
        "allow_download",
        "verify_data",
        "track_test_accuracy",
        "jit_compile",
        "deterministic",
        "strategy",
        "devices",
        "cluster_timeout",
    }
)


# The paper's batch; auto (batch_size=0) shrinks it on small data (measured in benchmarks/small_data.py:
# wine, 114 training rows, one step per epoch at 256: ROC AUC 0.950; at 32: 1.000).
PAPER_BATCH_SIZE = 256
SMALL_BATCH_MIN = 8


def auto_batch_size(num_train: int) -> int:
    """The batch of ``batch_size=0``: 256, or the largest power of two up to ``num_train / 2`` (at least 8).

    The paper's data (n >= 512) keep 256; a table of 114 rows gets 32.
    """
    half = max(int(num_train) // 2, 1)
    if half >= PAPER_BATCH_SIZE:
        return PAPER_BATCH_SIZE
    return max(SMALL_BATCH_MIN, 1 << (half.bit_length() - 1))


def architecture_for(input_shape) -> str:
    """The default network for inputs of this shape: ``mlp`` for vectors (tables), ``mnist_cnn``
    for small grayscale images (at most 32 x 32: MNIST-like), ``resnet20`` for color or larger images."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 1:
        return "mlp"
    if shape[-1] == 1 and max(shape[:2]) <= 32:
        return "mnist_cnn"
    return "resnet20"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The values that settings left at auto take (:meth:`ExperimentConfig.for_data`).

    Attributes:
      name: ``paper`` or ``photos``.
      epochs, patience: ``--epochs`` / ``--patience`` (patience None: the epochs, no early stop).
      lr_schedule: ``--lr_schedule``.
      predictor, beta: LIMIT's ``--predictor`` / ``--beta`` (beta also soft_reg's).
    """

    name: str
    epochs: int
    patience: int | None
    lr_schedule: str
    predictor: str
    beta: float


# The paper's MNIST protocol; it also serves tables and small grayscale images
# (benchmarks/small_data.py).
PAPER_RECIPE = Recipe("paper", epochs=400, patience=100, lr_schedule="constant", predictor="laplace", beta=10.0)
# Photographs (your color or large images, on a residual network), chosen on 10,000 CIFAR-10 photographs with
# 40% wrong labels on 2 CPU cores (docs/photos.md has the table): LIMIT_L with beta 10 learns too slowly there
# (38% clean test accuracy after 30 epochs; LIMIT_G with beta 1: 60% after 40 epochs); batch 128 trained no
# better than 256 per epoch and took 8% longer; a cosine schedule's best epochs are its last, so no early stop.
PHOTO_RECIPE = Recipe("photos", epochs=60, patience=None, lr_schedule="cosine", predictor="gaussian", beta=1.0)
PHOTO_NETWORKS = ("resnet20", "resnet34", "resnet50")  # and every keras:NAME body
# Adam's rate (the paper's), and the tenth of it that fine-tuning a pretrained body takes (its weights are
# already good: at 1e-3 the first epochs undo them).
LEARNING_RATE = 1e-3
FINE_TUNE_LEARNING_RATE = 1e-4


class ConfigError(ValueError):
    """An invalid setting; the message names the flag, the value and what is allowed."""


def _field(default, help_text: str, **kwargs):
    return dataclasses.field(default=default, metadata={"help": help_text}, **kwargs)


@dataclasses.dataclass(frozen=True)
class _Settings:
    """The settings of a run that belong to no method (the methods' options are added from the table)."""

    workdir: str = _field("", "Directory for this run's outputs (required).")
    dataset: str = _field(
        "mnist",
        f"Dataset: {', '.join(registry.DATASETS)}; CIFAR with human labels: cifar10n:worst|aggre|random1|random2|"
        "random3, cifar100n:noisy (CIFAR-N's label file in --data_dir); or your own: folder:PATH (one subfolder per class), "
        "csv:PATH (with --label_column), npz:PATH (arrays x, y) or tfds:NAME.",
    )
    test_data: str | None = _field(
        None, "Your data: a clean test set in the same format as --dataset (without one, only validation is reported)."
    )
    validation_fraction: float = _field(0.2, "Your data: the share drawn as the validation split.")
    image_size: int | None = _field(None, "folder: resize every image to this square size (needed when sizes differ).")
    label_column: str = _field("label", "csv: the column that holds the labels.")
    augment: str = _field(
        "auto",
        "Training-batch augmentation, a random crop after padding and a horizontal flip: on, off, or auto (on for "
        "color images, off for grayscale images and tables; the named datasets keep their protocol: CIFAR on).",
    )
    data_dir: str | None = _field(None, "Directory with the original data files (default: $LIMIT_DATA_DIR).")
    data_source: str = _field("auto", "auto (local files, then prepared tfds), local or tfds.")
    allow_download: bool = _field(False, "Let tensorflow-datasets download missing data.")
    verify_data: bool = _field(True, "Check the original data files against their published checksums.")
    clean_from: str | None = _field(
        None,
        "Train on the training data cleaned by the label issues found in this finished run (its detection is "
        "run if it has none): sample selection, the other answer to label noise.",
    )
    clean: str = _field(
        "drop", "With --clean_from: drop the flagged examples, or relabel them with the suggested label."
    )
    clean_score: str | None = _field(
        None, "With --clean_from: the detection score whose flags are used (default: the run's default score)."
    )
    noise: str = _field("uniform", f"Label-noise model: {', '.join(NOISE_NAMES)}.")
    noise_rate: float = _field(0.0, "Noise rate in [0, 1).")
    num_train_examples: int | None = _field(None, "Training subset size n (default: the whole training part).")
    clean_validation: bool = _field(False, "Keep validation labels clean (the paper corrupts them).")
    method: str = _field(
        methods.CE,
        f"Method: {', '.join(methods.METHODS)}. --method=limit alone is LIMIT without sampling with the data's "
        "recipe: LIMIT_L, beta 10 (the paper's MNIST setting), or for photographs LIMIT_G, beta 1.",
    )
    init_from: str | None = _field(None, "Work dir of a finished CE run: FW and DMI start from it, LIMIT '+init' too.")
    architecture: str | None = _field(
        None,
        f"Network: {', '.join(ARCHITECTURE_NAMES)}, or keras:NAME, the body of a keras.applications model "
        "(keras:EfficientNetV2B0, keras:ResNet50, keras:MobileNetV3Small, ...; with --weights) and a linear head "
        "(default: the dataset's paper network; your data: mlp for a table; for images mnist_cnn when grayscale "
        "and at most 32 pixels, else resnet20, a network for photos).",
    )
    weights: str = _field(
        "imagenet",
        "--architecture=keras:NAME: the body's starting weights: imagenet (downloaded, so only with "
        "--allow_download), none (random), or PATH (a weights file of that body: Keras' ImageNet file, or one "
        "saved with save_weights).",
    )
    freeze_backbone: bool = _field(
        False, "--architecture=keras:NAME: keep the body's weights fixed and train the head only (else fine-tune)."
    )
    epochs: int = _field(
        0, "Maximum number of epochs; 0 (the default) is auto: the paper's 400, or 60 for photographs (resnet20)."
    )
    optimizer: str = _field(
        "adam",
        "adam (the paper's: Adam, epsilon 1e-8) or sgd (momentum 0.9, Nesterov; give it a larger --learning_rate, "
        "e.g. 0.05). Both networks of LIMIT get one each.",
    )
    lr_schedule: str = _field(
        "auto",
        "The learning rate over the run: constant (the paper's), or cosine (from --learning_rate down to 0 over "
        "--epochs, per step; the classifier's starts after LIMIT's warm-up); auto (the default): cosine for "
        "photographs, else constant.",
    )
    patience: int = _field(
        0,
        "Stop after this many epochs without a better validation accuracy; 0 (the default) is auto: the paper's "
        "100, or no early stop for photographs (the cosine schedule's best epochs are its last).",
    )
    batch_size: int = _field(
        0,
        "Global batch size; 0 (the default) is auto: the paper's 256, and for LIMIT on fewer than 512 training "
        "examples the largest power of two up to half of them (at least 8), so that an epoch is at least two "
        "gradient steps (methods that fit the labels keep 256: more steps memorize sooner).",
    )
    seed: int = _field(0, "Seed of the weights, the batch order and sampling.")
    noise_seed: int = _field(0, "Seed of the split, the subset and the label noise.")
    track_test_accuracy: bool = _field(
        False, "Also log clean test accuracy per epoch (for plots; never for selection)."
    )
    jit_compile: bool = _field(False, "Compile the training step with XLA (slower on CPU; for GPUs).")
    deterministic: bool = _field(False, "Enable TensorFlow op determinism (bit-identical reruns on GPUs too).")
    strategy: str = _field(
        "default",
        "Distribution: default (one device), mirrored (all local GPUs) or multi_worker (the cluster in "
        "$TF_CONFIG; run the same command on every worker). See docs/distributed.md.",
    )
    devices: tuple[str, ...] = _field((), "Devices for --strategy=mirrored (default: all local GPUs).")
    cluster_timeout: int = _field(600, "--strategy=multi_worker: seconds to wait for every worker to join.")

    @property
    def user_data(self) -> bool:
        """Whether ``dataset`` is the user's own (``folder:``, ``csv:``, ``npz:``, ``tfds:``)."""
        return user.parse(self.dataset) is not None

    @property
    def resolved_architecture(self) -> str:
        """``architecture``, or the data's default: the paper's network for a named dataset, the MLP for a
        table, and ``auto`` for your images (decided by their shape: :func:`architecture_for`)."""
        if self.architecture:
            return self.architecture
        if self.user_data:
            return "mlp" if user.is_tabular(self.dataset) else AUTO_ARCHITECTURE
        return registry.get_spec(self.dataset).architecture

    def resolved_batch_size(self, num_train: int) -> int:
        """``batch_size``, or with 0 (auto) the paper's 256, or for a method with ``small_data_batches``
        :func:`auto_batch_size` of the training split's size (the paper's recipe; :meth:`for_data` also
        knows the photographs')."""
        if self.batch_size:
            return int(self.batch_size)
        return auto_batch_size(num_train) if self.spec.small_data_batches else PAPER_BATCH_SIZE

    def network_for(self, input_shape) -> str:
        """The classifier's network for inputs of this shape: ``--architecture`` or the data's default."""
        name = self.resolved_architecture
        return architecture_for(input_shape) if name == AUTO_ARCHITECTURE else name

    def recipe(self, input_shape) -> Recipe:
        """Where settings left at auto take their values: :data:`PHOTO_RECIPE` for your images on a
        residual network (color or larger than 32 pixels by default), else :data:`PAPER_RECIPE` (the named
        datasets keep the paper's protocol)."""
        network = self.network_for(input_shape)
        if self.user_data and (network in PHOTO_NETWORKS or methods.backbone_of(network)):
            return PHOTO_RECIPE
        return PAPER_RECIPE

    @property
    def resolved(self) -> bool:
        """Whether no setting is left at auto (:meth:`for_data` has nothing to fill in)."""
        return bool(
            self.epochs
            and self.patience
            and self.batch_size
            and self.lr_schedule != AUTO
            and self.predictor != AUTO
            and self.beta is not None
            and self.learning_rate is not None
        )

    @property
    def resolved_learning_rate(self) -> float:
        """``learning_rate``, or with None (auto) :data:`FINE_TUNE_LEARNING_RATE` for a ``keras:`` body that
        starts from weights (``--weights`` not ``none``) and is fine-tuned (no ``--freeze_backbone``), else
        :data:`LEARNING_RATE`. (An architecture left at auto is never a ``keras:`` body.)"""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return auto_learning_rate(dataclasses.asdict(self))

    def for_data(self, input_shape, num_train: int | None = None) -> ExperimentConfig:
        """This config with every auto setting replaced by the data's recipe (:meth:`recipe`): ``epochs``,
        ``patience`` and ``lr_schedule``, LIMIT's ``predictor`` and ``beta``; ``batch_size``
        (:meth:`resolved_batch_size`) and ``learning_rate`` (:attr:`resolved_learning_rate`).

        What a run trains with; ``config.json`` keeps the settings as given
        and ``results.json`` both. Settings already given are kept, so it is
        idempotent. Without ``num_train`` an auto batch size stays 0 (it
        depends on the training split's size).

        Raises:
          ConfigError: a given setting conflicts with the recipe's (``--warmup_epochs`` not below the
            resolved ``--epochs``).
        """
        if self.resolved:
            return self
        recipe = self.recipe(input_shape)
        epochs = self.epochs or recipe.epochs
        batch = self.batch_size or (0 if num_train is None else self.resolved_batch_size(num_train))
        resolved = self.replace(
            epochs=epochs,
            patience=self.patience or recipe.patience or epochs,
            batch_size=batch,
            lr_schedule=recipe.lr_schedule if self.lr_schedule == AUTO else self.lr_schedule,
            predictor=recipe.predictor if self.predictor == AUTO else self.predictor,
            beta=recipe.beta if self.beta is None else self.beta,
            learning_rate=self.resolved_learning_rate,
        )
        if resolved.warmup_epochs >= resolved.epochs:
            raise ConfigError(
                f"--warmup_epochs={resolved.warmup_epochs} is not allowed: it must be < --epochs={resolved.epochs} "
                f"(the {recipe.name} recipe's epochs; give --epochs)."
            )
        return resolved

    @property
    def spec(self) -> methods.MethodSpec:
        return methods.get(self.method)

    def validate(self) -> ExperimentConfig:
        """Checks every field's value; raises :class:`ConfigError` on the first bad one.

        Pure: it reads no file. Whether the paths it names exist and hold
        what they should (your data, the work dir, ``--init_from``,
        ``--clean_from``) is checked where runs are opened
        (:func:`limit_tf.paths.check`).
        """
        if self.user_data:
            if not 0.0 < self.validation_fraction < 1.0:
                raise ConfigError(
                    f"--validation_fraction={self.validation_fraction!r} is not allowed: it must be in (0, 1)."
                )
            if self.image_size is not None:
                _integer("image_size", self.image_size, minimum=8)
        else:
            if cifar_n.parse(self.dataset) is not None:
                problem = cifar_n.problem(self.dataset)
                if problem:
                    raise ConfigError(f"--dataset={self.dataset!r} is {problem}.")
                if self.noise_rate:
                    raise ConfigError(
                        f"--noise_rate={self.noise_rate!r} is not allowed with --dataset={self.dataset}: its labels "
                        "are the human ones; use 0."
                    )
            else:
                _choice(
                    "dataset",
                    self.dataset,
                    (
                        *registry.DATASETS,
                        "cifar10n:SET",
                        "cifar100n:SET",
                        "folder:PATH",
                        "csv:PATH",
                        "npz:PATH",
                        "tfds:NAME",
                    ),
                )
            if self.test_data:
                raise ConfigError(f"--test_data is for your own data; --dataset={self.dataset} has its test set.")
        _choice("data_source", self.data_source, SOURCE_NAMES)
        _choice("noise", self.noise, NOISE_NAMES)
        _choice("method", self.method, tuple(methods.METHODS))
        _choice("strategy", self.strategy, STRATEGY_NAMES)
        _choice("augment", self.augment, AUGMENT_MODES)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.architecture is not None:
            backbone = methods.backbone_of(self.architecture)
            if backbone is None:
                _choice("architecture", self.architecture, (*ARCHITECTURE_NAMES, "keras:NAME"))
            elif backbone not in methods.BACKBONES:
                raise ConfigError(
                    f"--architecture={self.architecture!r} is not allowed: keras:NAME takes one of "
                    f"{', '.join(methods.BACKBONES)}."
                )
            elif self.weights == "imagenet" and not self.allow_download:
                raise ConfigError(
                    f"--weights=imagenet with --architecture={self.architecture} downloads the ImageNet weights: "
                    "give --allow_download (a network connection), --weights=none (random), or --weights=PATH "
                    "(a weights file of that body)."
                )
        if not self.workdir:
            raise ConfigError("--workdir is required: a directory for this run's outputs.")
        if math.isnan(self.noise_rate) or not 0.0 <= self.noise_rate < 1.0:
            raise ConfigError(f"--noise_rate={self.noise_rate!r} is not allowed: it must be in [0, 1).")
        if self.noise == "none" and self.noise_rate != 0:
            raise ConfigError(f"--noise_rate={self.noise_rate!r} is not allowed with --noise=none: use 0.")
        if self.noise == "pair" and self.dataset != "cifar10":
            raise ConfigError(
                f"--noise=pair is defined for cifar10 only, not --dataset={self.dataset}; use next_class."
            )
        if self.noise == "asymmetric" and self.dataset not in ("mnist", "cifar10"):
            raise ConfigError(f"--noise=asymmetric has no class map for --dataset={self.dataset}; use next_class.")
        self._validate_hyperparameters()
        self._validate_clean_from()
        for flag in ("epochs", "patience"):
            value = getattr(self, flag)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"--{flag}={value!r} is not allowed: it must be an integer >= 1, or 0 for auto.")
        _integer("batch_size", self.batch_size, minimum=0)
        for flag in ("seed", "noise_seed"):
            _integer(flag, getattr(self, flag), minimum=0)
        if self.num_train_examples is not None:
            _integer("num_train_examples", self.num_train_examples, minimum=1)
        if self.epochs and self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"--warmup_epochs={self.warmup_epochs} is not allowed: it must be < --epochs={self.epochs}."
            )
        self._validate_init_from()
        if self.devices and self.strategy != "mirrored":
            raise ConfigError(
                f"--devices={','.join(self.devices)} is not allowed with --strategy={self.strategy}: "
                "it names the devices of --strategy=mirrored (multi_worker uses every local GPU of each worker)."
            )
        if self.strategy == "multi_worker":
            check_tf_config()
            _integer("cluster_timeout", self.cluster_timeout, minimum=1)
        if self.jit_compile and self.strategy != "default":
            raise ConfigError(
                f"--jit_compile is not supported with --strategy={self.strategy} (keras-team/keras#19005)."
            )
        return self

    def _validate_hyperparameters(self) -> None:
        """Checks the method's hyperparameters against the ranges of the method table,
        and the ones it does not read against their ranges with 0 allowed."""
        spec = self.spec
        settings = dataclasses.asdict(self)
        checked = set()
        for h in spec.active_hyperparameters(settings):
            problem = h.problem(getattr(self, h.name))
            if problem:
                context = " and ".join(f"--{k}" if v is True else f"--{k}={v}" for k, v in h.when)
                raise ConfigError(
                    f"--{h.name}={getattr(self, h.name)!r} is not allowed with {context or f'--method={self.method}'}: "
                    f"{problem}."
                )
            checked.add(h.name)
        for other in methods.METHODS.values():
            for h in other.hyperparameters:
                if h.name in checked:
                    continue
                # Unused settings keep their range, but 0 is fine where the method needs > 0.
                problem = dataclasses.replace(h, exclusive_minimum=False).problem(getattr(self, h.name))
                if problem:
                    raise ConfigError(f"--{h.name}={getattr(self, h.name)!r} is not allowed: {problem}.")

    def _validate_init_from(self) -> None:
        needs = self.spec.starts_from_ce
        if self.init_from is None:
            if needs == "required":
                raise ConfigError(
                    f"--init_from is required with --method={self.method}: the work dir of a finished CE run."
                )
            return
        if needs == "no":
            raise ConfigError(
                f"--init_from is not allowed with --method={self.method}: only FW, DMI and LIMIT ('+init') use it."
            )

    def _validate_clean_from(self) -> None:
        _choice("clean", self.clean, CLEAN_MODES)

    # ------------------------------------------------------------------
    # Identity: which settings change a run's results.

    def experiment(self) -> dict[str, Any]:
        """The settings that change this run's results (the identity of the experiment).

        Leaves out the execution settings (:data:`EXECUTION_FIELDS`) and the
        hyperparameters the method does not read; resolves the architecture
        and ``init_from``'s path, so that ``runs/k/`` and ``./runs/k`` agree.
        """
        values = dataclasses.asdict(self)
        spec = self.spec
        used = {h.name for h in spec.active_hyperparameters(values)}
        method_fields = {h.name for s in methods.METHODS.values() for h in s.hyperparameters}
        out = {}
        for name, value in values.items():
            if name in EXECUTION_FIELDS or (name in method_fields and name not in used):
                continue
            out[name] = value
        if self.noise_rate == 0:
            out["noise"] = "none"  # any noise model at rate 0 changes no label
        out["architecture"] = self.resolved_architecture
        if "learning_rate" in out:  # auto and its value train alike (runs of 0.2 recorded 0.001)
            out["learning_rate"] = self.resolved_learning_rate
        out["init_from"] = str(Path(self.init_from).resolve()) if self.init_from else None
        out["clean_from"] = str(Path(self.clean_from).resolve()) if self.clean_from else None
        if not self.clean_from:
            out.pop("clean")
            out.pop("clean_score")
        if self.user_data:
            kind, target = user.parse(self.dataset)
            out["dataset"] = f"{kind}:{target if kind == 'tfds' else Path(target).expanduser().resolve()}"
            out["test_data"] = str(Path(self.test_data).expanduser().resolve()) if self.test_data else None
        else:
            for name in ("test_data", "validation_fraction", "image_size", "label_column"):
                out.pop(name)
        return out

    def differences(self, other: ExperimentConfig) -> list[str]:
        """The fields whose values make ``other`` a different experiment."""
        mine, theirs = self.experiment(), other.experiment()
        return sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))

    # ------------------------------------------------------------------
    # Serialization.

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r}; allowed: {', '.join(sorted(known))}.")
        values = dict(values)
        if "devices" in values:
            values["devices"] = tuple(values["devices"] or ())
        return cls(**values)

    def replace(self, **changes) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)


ExperimentConfig = dataclasses.make_dataclass(
    "ExperimentConfig",
    [(h.name, h.python_type.__name__, _field(h.default, h.help)) for h in methods.options()],
    bases=(_Settings,),
    frozen=True,
    namespace={
        "__module__": __name__,
        "__doc__": """Everything that defines one run. Defaults follow the paper's MNIST protocol.

    The data, protocol and execution settings are :class:`_Settings`' fields;
    the methods' options (``learning_rate``, ``beta``, ``gce_q``, ...) are
    made from the method table (:func:`limit_tf.methods.options`), each with
    its default and help.
    """,
    },
)


def field_help(name: str) -> str:
    """The help text of a config field (used for its flag)."""
    return next(f.metadata.get("help", "") for f in dataclasses.fields(ExperimentConfig) if f.name == name)


DEFAULTS = dataclasses.asdict(ExperimentConfig())


def auto_learning_rate(settings: Mapping[str, Any]) -> float:
    """The learning rate that ``--learning_rate`` left at auto takes for these settings (a config's fields):
    :data:`FINE_TUNE_LEARNING_RATE` for a pretrained ``keras:`` body that is fine-tuned, else
    :data:`LEARNING_RATE`."""
    fine_tuned = (
        methods.backbone_of(settings.get("architecture") or "")
        and not settings.get("freeze_backbone")
        and settings.get("weights", "imagenet") != "none"
    )
    return FINE_TUNE_LEARNING_RATE if fine_tuned else LEARNING_RATE


def naming(settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(settings, defaults)`` for :func:`limit_tf.methods.run_name` and :func:`~limit_tf.methods.label`:
    a run's learning rate is named only when it is not the one auto gives it (1e-3 on the paper's
    networks, 1e-4 for a fine-tuned body), whether it was given or left at auto."""
    values = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
    auto = auto_learning_rate(values)
    if values.get("learning_rate") is None:
        values["learning_rate"] = auto
    return values, {**DEFAULTS, "learning_rate": auto}


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


def _choice(flag: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"--{flag}={value!r} is not allowed; allowed: {', '.join(allowed)}.")


def _integer(flag: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"--{flag}={value!r} is not allowed: it must be an integer >= {minimum}.")
