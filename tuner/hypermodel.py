"""A ``keras_tuner.HyperModel`` over the method table.

The paper picks beta (and sigma_q for "+S") per setting by validation
accuracy (appendix B). :class:`MethodHyperModel` builds any method of
``limit_tf.methods.METHODS`` from a base experiment config whose
hyperparameters the tuner overrides:

- ``beta``: the paper's grid {0, 0.1, 0.3, 1, 3, 10, 30, 100} as a choice,
  or a log range (LIMIT and soft regularization);
- ``predictor``: gaussian / laplace (LIMIT);
- ``sample`` and ``sigma_q`` in {0.01, 0.03, 0.1, 0.3} (LIMIT "+S");
- ``learning_rate`` (every method).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import keras_tuner as kt

from limit_tf import methods
from limit_tf.config import ExperimentConfig

PAPER_BETAS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
PAPER_SIGMA_QS = (0.01, 0.03, 0.1, 0.3)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Which hyperparameters are searched, and over what.

    Attributes:
      betas: a choice of beta values; or None with ``beta_range`` set.
      beta_range: ``(low, high)`` for a log-uniform beta (low > 0).
      predictors: LIMIT predictors to choose from.
      samples: whether "+S" is searched: (False,), (True,) or (False, True).
      sigma_qs: sigma_q choices when sampling.
      learning_rates: learning-rate choices.
    """

    betas: Sequence[float] | None = PAPER_BETAS
    beta_range: tuple[float, float] | None = None
    predictors: Sequence[str] = ("laplace",)
    samples: Sequence[bool] = (False,)
    sigma_qs: Sequence[float] = PAPER_SIGMA_QS
    learning_rates: Sequence[float] = (1e-3,)

    def validate(self) -> SearchSpace:
        if (self.betas is None) == (self.beta_range is None):
            raise ValueError("give exactly one of betas and beta_range.")
        if self.betas is not None and (not self.betas or min(self.betas) < 0):
            raise ValueError(f"betas={list(self.betas)!r} is not allowed: non-empty, every value >= 0.")
        if self.beta_range is not None and not 0 < self.beta_range[0] < self.beta_range[1]:
            raise ValueError(f"beta_range={self.beta_range!r} is not allowed: 0 < low < high is required.")
        bad = [p for p in self.predictors if p not in ("gaussian", "laplace", "ce")]
        if bad or not self.predictors:
            raise ValueError(f"predictors={list(self.predictors)!r} is not allowed; choose from gaussian, laplace, ce.")
        if not self.sigma_qs or min(self.sigma_qs) <= 0:
            raise ValueError(f"sigma_qs={list(self.sigma_qs)!r} is not allowed: every value must be > 0.")
        if not self.learning_rates or min(self.learning_rates) <= 0:
            raise ValueError(f"learning_rates={list(self.learning_rates)!r} is not allowed: every value must be > 0.")
        return self


def _choice(hp: kt.HyperParameters, name: str, values):
    values = list(dict.fromkeys(values))
    return hp.Choice(name, values) if len(values) > 1 else hp.Fixed(name, values[0])


class MethodHyperModel(kt.HyperModel):
    """Builds the base config's method with the hyperparameters ``hp`` chooses.

    Args:
      base: the experiment config (method, architecture, ...); its
        searched fields are overridden per trial.
      num_classes: K.
      input_shape: input shape without the batch dimension.
      space: the :class:`SearchSpace`.
      init_weights: a CE run's weights (``--init_from``) for FW / DMI / "+init".
    """

    def __init__(
        self,
        base: ExperimentConfig,
        num_classes: int,
        input_shape,
        space: SearchSpace = SearchSpace(),
        init_weights=None,
    ):
        super().__init__(name=f"{base.method}_hypermodel", tunable=True)
        self.base = base
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.space = space.validate()
        self.init_weights = init_weights

    def config_for(self, hp: kt.HyperParameters) -> ExperimentConfig:
        """The experiment config of one trial (also used to retrain the best trial)."""
        s, changes = self.space, {}
        changes["learning_rate"] = _choice(hp, "learning_rate", s.learning_rates)
        if self.base.method in ("limit", "soft_reg"):
            if s.betas is not None:
                changes["beta"] = _choice(hp, "beta", [float(b) for b in s.betas])
            else:
                changes["beta"] = hp.Float("beta", s.beta_range[0], s.beta_range[1], sampling="log")
        if self.base.method == "limit":
            changes["predictor"] = _choice(hp, "predictor", s.predictors)
            changes["sample"] = bool(_choice(hp, "sample", [bool(v) for v in s.samples]))
            if changes["sample"]:
                with hp.conditional_scope("sample", [True]):
                    changes["sigma_q"] = _choice(hp, "sigma_q", s.sigma_qs)
        return self.base.replace(**changes)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        config = self.config_for(hp)
        ctx = methods.MethodContext(config, self.num_classes, self.input_shape, init_weights=self.init_weights)
        return methods.build_method(ctx)
