"""The method table: what every training method is, in one place, without TensorFlow.

Each :class:`MethodSpec` states a method's options (its hyperparameters:
name, default, help, the range it allows and the paper's search grid; the
:class:`~limit_tf.config.ExperimentConfig` fields and flags are made from
them), the function that builds it (named, so this module needs no
TensorFlow), whether it starts from a trained cross-entropy run, the
networks it trains, and its named variants with the paper's row labels.
Everything that needs to know about methods derives from here: config
fields and validation, the flags and their help, the sweep's run names and
grids, the report's rows and paper values, the tuner's search space and
detection's default score.

Option names belong to their method: a name two methods share is one
setting with one meaning (``learning_rate``; LIMIT's and soft
regularization's ``beta``; ``q_architecture``), declared once
(:data:`SHARED_OPTIONS`); any other option is prefixed with its method
(``gce_q``, ``sce_alpha``), so that two methods' options cannot collide
(``tests/test_methods.py`` checks both).

Adding a method: one :class:`MethodSpec` in :data:`METHODS` (its options
and the name of its builder), the builder, one test.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One setting a method reads, and what is allowed for it.

    Attributes:
      name: the :class:`~limit_tf.config.ExperimentConfig` field (and flag).
      kind: ``float``, ``int``, ``bool`` or ``choice``.
      grid: the paper's search grid (empty: the paper does not search it).
      choices: the allowed values of a ``choice``.
      minimum, maximum: the allowed range of a number (None: unbounded).
      exclusive_minimum, exclusive_maximum: whether the bounds are excluded.
      log: searched on a log scale (random / Bayesian search).
      token: its short name in run-directory names and row labels; empty
        for settings that variants fix (LIMIT's predictor, "+S").
      when: the hyperparameter is active only when these config settings
        hold (``sigma_q`` only with ``sample=True``).
      default: the value of the config field (and flag) it defines; ``None``
        (or ``"auto"`` among a choice's values) leaves it to the data's recipe
        (:meth:`limit_tf.config.ExperimentConfig.for_data`).
      help: the flag's help text.
    """

    name: str
    kind: str = "float"
    grid: tuple = ()
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    log: bool = False
    token: str = ""
    when: tuple[tuple[str, Any], ...] = ()
    default: Any = None
    help: str = ""

    @property
    def python_type(self) -> type:
        return {"float": float, "int": int, "bool": bool, "choice": str}[self.kind]

    def problem(self, value) -> str | None:
        """Why ``value`` is not allowed (one phrase), or None when it is."""
        if self.kind == "choice":
            return None if value in self.choices else f"allowed: {', '.join(map(str, self.choices))}"
        if value is None and self.default is None:
            return None  # auto: the recipe's value
        if self.kind == "bool":
            return None if isinstance(value, bool) else "it must be true or false"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "it must be a finite number"
        if self.kind == "int" and int(value) != value:
            return "it must be an integer"
        low_ok = self.minimum is None or (value > self.minimum if self.exclusive_minimum else value >= self.minimum)
        high_ok = self.maximum is None or (value < self.maximum if self.exclusive_maximum else value <= self.maximum)
        return None if low_ok and high_ok else f"it must be {self.range_text()}"

    def range_text(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            left = "(" if self.exclusive_minimum else "["
            right = ")" if self.exclusive_maximum else "]"
            return f"in {left}{self.minimum:g}, {self.maximum:g}{right}"
        if self.minimum is not None:
            return f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        if self.maximum is not None:
            return f"{'<' if self.exclusive_maximum else '<='} {self.maximum:g}"
        return "any number"

    def active(self, settings: Mapping[str, Any]) -> bool:
        return all(settings.get(key) == value for key, value in self.when)


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named configuration of a method (e.g. LIMIT_L without sampling).

    Attributes:
      name: the variant's name (``--variants`` of the sweep, report rows).
      settings: the config settings that define it (beyond ``method``).
      paper_label: the paper's row label for it (:mod:`limit_tf.paper`), if any.
    """

    name: str
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    paper_label: str | None = None


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """What a method is.

    Attributes:
      name: the ``--method`` value.
      summary: one line for help texts and tables.
      hyperparameters: the settings it reads (besides the common protocol).
      variants: its named variants (a method without any has one, its name).
      starts_from_ce: ``"required"`` (fine-tunes a trained CE model, FW and
        DMI), ``"optional"`` (LIMIT "+init") or ``"no"``.
      predictor_network: it trains a second network q besides the classifier
        (detection's ``limit`` score reads q's predictions).
      builder: ``"module:function"``, the function that builds the compiled
        model from a :class:`limit_tf.builders.MethodContext`.
      small_data_batches: on small data the automatic batch size
        (``--batch_size=0``) shrinks so that an epoch has at least two steps.
        LIMIT's classifier never fits the labels and gains from the extra
        steps; methods that fit the labels memorize sooner with them and
        keep the paper's 256 (``benchmarks/small_data.py``, wine: LIMIT_L
        ROC AUC 0.950 / 0.980 / 1.000 at 256 against 1.000 / 0.978 / 0.988 at
        32 with exact noise estimates, CE 0.994 / 0.976 / 0.983 against
        0.888 / 0.962 / 0.965).
    """

    name: str
    summary: str
    hyperparameters: tuple[Hyperparameter, ...] = ()
    variants: tuple[Variant, ...] = ()
    starts_from_ce: str = "no"
    predictor_network: bool = False
    builder: str = ""
    small_data_batches: bool = False

    def hyperparameter(self, name: str) -> Hyperparameter | None:
        return next((h for h in self.hyperparameters if h.name == name), None)

    def active_hyperparameters(self, settings: Mapping[str, Any]) -> tuple[Hyperparameter, ...]:
        return tuple(h for h in self.hyperparameters if h.active(settings))

    def all_variants(self) -> tuple[Variant, ...]:
        return self.variants or (Variant(self.name, {}, None),)


# A setting left to the data's recipe (limit_tf.config.ExperimentConfig.for_data).
AUTO = "auto"
# LIMIT's q distributions (limit_tf.limit.LimitModel's ``predictor``).
PREDICTORS = ("gaussian", "laplace", "ce")
# The architectures of limit_tf.models by name (kept here, TensorFlow-free, for
# validation; tests/test_models.py checks that the two agree).
ARCHITECTURES = ("mnist_cnn", "mlp", "resnet20", "resnet34", "resnet50")
# keras.applications bodies (``--architecture=keras:NAME``, limit_tf.backbones): the input each expects,
# "raw" (0-255 RGB, its preprocessing inside), "tf" (x / 127.5 - 1), "torch" (ImageNet mean / std on
# [0, 1]) or "caffe" (BGR minus the ImageNet mean), and the smallest side it accepts.
BACKBONES: dict[str, tuple[str, int]] = {
    **{f"EfficientNetB{i}": ("raw", 32) for i in range(8)},
    **{f"EfficientNetV2{v}": ("raw", 32) for v in ("B0", "B1", "B2", "B3", "S", "M", "L")},
    **{f"ConvNeXt{v}": ("raw", 32) for v in ("Tiny", "Small", "Base", "Large", "XLarge")},
    "MobileNetV3Small": ("raw", 32),
    "MobileNetV3Large": ("raw", 32),
    "MobileNet": ("tf", 32),
    "MobileNetV2": ("tf", 32),
    **{f"ResNet{d}V2": ("tf", 32) for d in (50, 101, 152)},
    "Xception": ("tf", 71),
    "InceptionV3": ("tf", 75),
    "InceptionResNetV2": ("tf", 75),
    **{f"DenseNet{d}": ("torch", 32) for d in (121, 169, 201)},
    **{f"ResNet{d}": ("caffe", 32) for d in (50, 101, 152)},
    "VGG16": ("caffe", 32),
    "VGG19": ("caffe", 32),
}
BACKBONE_PREFIX = "keras:"


def backbone_of(architecture: str | None) -> str | None:
    """``NAME`` of ``keras:NAME``, else None."""
    if architecture and architecture.startswith(BACKBONE_PREFIX):
        return architecture[len(BACKBONE_PREFIX) :]
    return None


# Shared hyperparameters. The learning rate belongs to every method; only DMI
# searches it in the paper.
LEARNING_RATE = Hyperparameter(
    "learning_rate",
    minimum=0.0,
    exclusive_minimum=True,
    log=True,
    token="lr",
    default=None,
    help="The learning rate (default: 1e-3; 1e-4 to fine-tune a keras: body from pretrained weights).",
)
BETA = Hyperparameter(
    "beta",
    grid=(0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
    minimum=0.0,
    log=True,
    token="beta",
    default=None,
    help="LIMIT's norm penalty beta; soft_reg: the beta of eq. (11). Default (auto): 10 (chosen on MNIST and small "
    "tables), 1 for photographs (chosen on CIFAR-10; docs/photos.md).",
)
SIGMA_Q = Hyperparameter(
    "sigma_q",
    grid=(0.01, 0.03, 0.1, 0.3),
    minimum=0.0,
    exclusive_minimum=True,
    log=True,
    token="sigma",
    when=(("sample", True),),
    default=0.0,
    help="Std of LIMIT's sampled gradient (with --sample).",
)
# The q-network: "reference" is the authors' q for the classifier's architecture
# (limit_tf.models.build_predictor), "same" an identical copy of the classifier.
Q_ARCHITECTURE = Hyperparameter(
    "q_architecture",
    kind="choice",
    choices=("reference", "same", *ARCHITECTURES),
    token="qnet",
    default="reference",
    help="LIMIT / soft_reg q-network: reference (the authors' q for the classifier's architecture; MNIST CNN: a "
    f"batch norm after the 128-unit layer), same (a copy of the classifier's), or one of {', '.join(ARCHITECTURES)}.",
)
# The authors' grid for the gradient-noise baselines (their generate_commands.py).
NOISE_STD = Hyperparameter(
    "noise_std",
    grid=(0.01, 0.03, 0.1, 0.3),
    minimum=0.0,
    exclusive_minimum=True,
    log=True,
    token="std",
    default=0.1,
    help="CE+GN / CE+LN: per-example std of the noise added to the logit gradient.",
)
# One setting with one meaning across the methods that read it.
SHARED_OPTIONS = ("learning_rate", "beta", "q_architecture", "noise_std")


def _builder(name: str) -> str:
    return f"limit_tf.builders:build_{name}"


def _loss_baseline(name: str, summary: str, label: str | None, *extra: Hyperparameter) -> MethodSpec:
    return MethodSpec(name, summary, (LEARNING_RATE, *extra), (Variant(name, {}, label),), builder=_builder(name))


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        _loss_baseline("ce", "cross-entropy on the observed labels", "CE"),
        _loss_baseline("mae", "mean absolute error sum_c |y_c - s_c(a)| (Ghosh et al., 2017)", "MAE"),
        _loss_baseline("mse", "squared error sum_c (y_c - s_c(a))^2", None),
        _loss_baseline(
            "gce",
            "generalized cross-entropy (1 - s_y^q) / q (Zhang & Sabuncu, 2018)",
            None,
            Hyperparameter(
                "gce_q",
                minimum=0.0,
                maximum=1.0,
                exclusive_minimum=True,
                token="q",
                default=0.7,
                help="GCE's q in (0, 1].",
            ),
        ),
        _loss_baseline(
            "sce",
            "symmetric cross-entropy alpha * CE + beta * reverse CE, log 0 clipped to -4 (Wang et al., 2019)",
            None,
            Hyperparameter(
                "sce_alpha",
                grid=(0.01, 0.1, 0.5, 1.0),
                minimum=0.0,
                token="alpha",
                default=0.1,
                help="SCE: the weight alpha of cross-entropy (the paper's CIFAR-10 setting: 0.1).",
            ),
            Hyperparameter(
                "sce_beta",
                grid=(0.1, 0.5, 1.0, 2.0),
                minimum=0.0,
                token="rce",
                default=1.0,
                help="SCE: the weight of reverse cross-entropy (the paper's CIFAR-10 setting: 1.0; not LIMIT's --beta).",
            ),
        ),
        MethodSpec(
            "fw",
            "forward correction with T estimated from the CE model (Patrini et al., 2017); fine-tunes it",
            (LEARNING_RATE,),
            (Variant("fw", {}, "FW"),),
            starts_from_ce="required",
            builder=_builder("fw"),
        ),
        MethodSpec(
            "dmi",
            "determinant-based mutual information loss (Xu et al., 2019); fine-tunes the CE model",
            (dataclasses.replace(LEARNING_RATE, grid=(1e-3, 1e-4, 1e-5, 1e-6)),),
            (Variant("dmi", {}, "DMI"),),
            starts_from_ce="required",
            builder=_builder("dmi"),
        ),
        _loss_baseline(
            "ce_gn", "cross-entropy with Gaussian noise on the logit gradient (paper, Sec. 4.1)", "CE + GN", NOISE_STD
        ),
        _loss_baseline(
            "ce_ln", "cross-entropy with Laplace noise on the logit gradient (paper, Sec. 4.1)", "CE + LN", NOISE_STD
        ),
        MethodSpec(
            "soft_reg",
            "cross-entropy plus the soft penalty of the paper's eq. (11)",
            (
                LEARNING_RATE,
                Hyperparameter(
                    "soft_lambda",
                    grid=(0.001, 0.01, 0.03, 0.1),
                    minimum=0.0,
                    log=True,
                    token="lambda",
                    default=0.01,
                    help="Soft regularization (eq. 11): lambda.",
                ),
                dataclasses.replace(BETA, grid=(0.0, 0.01, 0.1, 1.0, 10.0)),
                Q_ARCHITECTURE,
            ),
            (Variant("soft_reg", {}, "Soft reg. (11)"),),
            predictor_network=True,
            builder=_builder("soft_reg"),
        ),
        MethodSpec(
            "limit",
            "LIMIT: the classifier learns from gradients predicted without labels (paper, Sec. 3)",
            (
                LEARNING_RATE,
                Hyperparameter(
                    "predictor",
                    kind="choice",
                    choices=(AUTO, *PREDICTORS),
                    default=AUTO,
                    help="LIMIT's q distribution: laplace (LIMIT_L), gaussian (LIMIT_G) or ce; auto (the default): "
                    "laplace, and gaussian for photographs (chosen on CIFAR-10; docs/photos.md).",
                ),
                Hyperparameter(
                    "sample",
                    kind="bool",
                    default=False,
                    help="LIMIT '+S': the classifier gets a sample around the predicted gradient.",
                ),
                BETA,
                SIGMA_Q,
                Hyperparameter(
                    "warmup_epochs",
                    kind="int",
                    minimum=0,
                    token="warmup",
                    default=0,
                    help="LIMIT: epochs at the start during which only q trains.",
                ),
                Q_ARCHITECTURE,
            ),
            (
                Variant("limit_g", {"predictor": "gaussian", "sample": False}, "LIMIT_G - S"),
                Variant("limit_l", {"predictor": "laplace", "sample": False}, "LIMIT_L - S"),
                Variant("limit_g_s", {"predictor": "gaussian", "sample": True}, "LIMIT_G + S"),
                Variant("limit_l_s", {"predictor": "laplace", "sample": True}, "LIMIT_L + S"),
                Variant("limit_ce", {"predictor": "ce", "sample": False}, None),
            ),
            starts_from_ce="optional",
            predictor_network=True,
            builder=_builder("limit"),
            small_data_batches=True,
        ),
    )
}

VARIANTS: dict[str, tuple[MethodSpec, Variant]] = {
    variant.name: (spec, variant) for spec in METHODS.values() for variant in spec.all_variants()
}

# The methods other code refers to by role: CE is what FW, DMI and "+init" start
# from and what speed is compared with; LIMIT is the paper's method.
CE = "ce"
LIMIT = "limit"
# The default comparison (demo, sweep): CE and the paper's best MNIST variant.
DEFAULT_VARIANTS = (CE, "limit_l")


def options() -> tuple[Hyperparameter, ...]:
    """Every method's options, each name once (shared ones once), in table order.

    Raises:
      ValueError: two methods declare the same name differently (a shared
        option must have one default and one kind), or share a name that is
        not in :data:`SHARED_OPTIONS`.
    """
    seen: dict[str, tuple[Hyperparameter, str]] = {}
    for spec in METHODS.values():
        for h in spec.hyperparameters:
            if h.name in seen:
                first, owner = seen[h.name]
                if h.name not in SHARED_OPTIONS:
                    raise ValueError(f"option {h.name!r} of {spec.name!r} collides with {owner!r}'s: prefix it.")
                if (first.default, first.kind) != (h.default, h.kind):
                    raise ValueError(f"shared option {h.name!r} has different defaults in {owner!r} and {spec.name!r}.")
                continue
            seen[h.name] = (h, spec.name)
    return tuple(h for h, _ in seen.values())


def variants_of(method: str, *, paper_only: bool = False) -> list[str]:
    """The variant names of a method (only those the paper reports, with ``paper_only``)."""
    return [v.name for v in get(method).all_variants() if v.paper_label or not paper_only]


def paper_variants() -> list[str]:
    """Every variant the paper's MNIST table reports, in the table's row order."""
    from limit_tf import paper

    by_label = {variant.paper_label: name for name, (_, variant) in VARIANTS.items() if variant.paper_label}
    return [by_label[label] for label in paper.MNIST_ROWS if label in by_label]


def get(name: str) -> MethodSpec:
    """The spec of a method; a clear error for an unknown name."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}.")
    return METHODS[name]


def variant_settings(name: str) -> dict[str, Any]:
    """The config settings of a variant: ``{"method": ..., **its settings}``."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; allowed: {', '.join(VARIANTS)}.")
    spec, variant = VARIANTS[name]
    return {"method": spec.name, **variant.settings}


def variant_of(settings: Mapping[str, Any]) -> Variant:
    """The variant a run's settings (a config or its dict) belong to."""
    settings = _as_dict(settings)
    spec = get(settings["method"])
    for variant in spec.all_variants():
        if all(settings.get(k) == v for k, v in variant.settings.items()):
            return variant
    return Variant(spec.name, {}, None)


def hyperparameter_values(settings: Mapping[str, Any], *, defaults: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(token, value)`` of the hyperparameters that name a run: the active
    ones with a token that the paper searches or that differ from ``defaults``."""
    settings = _as_dict(settings)
    spec = get(settings["method"])
    out = []
    for h in spec.active_hyperparameters(settings):
        value = settings.get(h.name)
        if h.token and (h.grid or value != defaults.get(h.name)):
            out.append((h.token, value))
    return out


def run_name(settings: Mapping[str, Any], *, defaults: Mapping[str, Any]) -> str:
    """A run-directory name: the variant plus its hyperparameters, e.g. ``limit_l_beta10``."""
    settings = _as_dict(settings)
    name = variant_of(settings).name
    name += "".join(f"_{token}{_fmt(value)}" for token, value in hyperparameter_values(settings, defaults=defaults))
    if settings.get("init_from") and get(settings["method"]).starts_from_ce == "optional":
        name += "_init"
    if settings.get("clean_from"):
        name += f"_cleaned-{settings.get('clean', 'drop')}"
    return name


def label(settings: Mapping[str, Any], *, defaults: Mapping[str, Any]) -> str:
    """A row label: the variant plus its hyperparameters, e.g. ``limit_l (beta=10, +init)``."""
    settings = _as_dict(settings)
    extras = [f"{token}={_fmt(value)}" for token, value in hyperparameter_values(settings, defaults=defaults)]
    if settings.get("init_from") and get(settings["method"]).starts_from_ce == "optional":
        extras.append("+init")
    if settings.get("clean_from"):
        extras.append(f"cleaned: {settings.get('clean', 'drop')}")
    name = variant_of(settings).name
    return name + (f" ({', '.join(extras)})" if extras else "")


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _as_dict(settings) -> dict[str, Any]:
    if dataclasses.is_dataclass(settings):
        return dataclasses.asdict(settings)
    return dict(settings)
