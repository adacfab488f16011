"""A ``keras_tuner.HyperModel`` over the method table.

The paper picks each method's hyperparameters per setting by validation
accuracy (appendix B). :class:`MethodHyperModel` builds any method of
:data:`limit_tf.methods.METHODS` from a base experiment config whose
hyperparameters the tuner overrides; the search space comes from the method
table (:meth:`SearchSpace.for_method`): by default the paper's grid for every
hyperparameter the paper searches (LIMIT: beta, and sigma_q under "+S";
soft regularization: lambda and beta; CE + GN / LN: the noise std; DMI: the
learning rate), and any other choice or range on request. Trials train on
the runner's own pipeline (:func:`limit_tf.data.training_stream`), so a trial
and the retrained best setting see the same batches; execution ``e`` of a
trial uses seed ``seed + e``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence

import keras
import keras_tuner as kt

from limit_tf import builders, methods
from limit_tf import callbacks as callbacks_lib
from limit_tf import data as data_lib
from limit_tf import train as train_lib
from limit_tf.config import ConfigError, ExperimentConfig


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Which hyperparameters are searched, and over what.

    Attributes:
      values: hyperparameter name -> the values to choose from.
      ranges: hyperparameter name -> ``(low, high)``, searched as a float
        (log-uniformly for the hyperparameters the method table marks ``log``).
    """

    values: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_method(
        cls, method: str, *, grids: Mapping[str, Sequence] | None = None, ranges=None, paper_grids: bool = True
    ) -> SearchSpace:
        """The paper's grids of ``method`` (when ``paper_grids``), overridden by ``grids`` and ``ranges``."""
        spec = methods.get(method)
        grids, ranges = dict(grids or {}), dict(ranges or {})
        for name in (*grids, *ranges):
            if spec.hyperparameter(name) is None:
                allowed = ", ".join(h.name for h in spec.hyperparameters)
                raise ConfigError(f"--method={method} has no hyperparameter {name!r} to search; it has: {allowed}.")
        values = {}
        for h in spec.hyperparameters:
            if h.name in ranges:
                continue
            if h.name in grids:
                values[h.name] = list(grids[h.name])
            elif paper_grids and h.grid:
                values[h.name] = list(h.grid)
        return cls(values, ranges).validate(method)

    def validate(self, method: str) -> SearchSpace:
        """Raises :class:`ConfigError` for a name the method does not read or a value it does not allow."""
        spec = methods.get(method)
        for name in (*self.values, *self.ranges):
            if spec.hyperparameter(name) is None:
                allowed = ", ".join(h.name for h in spec.hyperparameters)
                raise ConfigError(f"--method={method} has no hyperparameter {name!r} to search; it has: {allowed}.")
        for name, values in self.values.items():
            h = spec.hyperparameter(name)
            if not values:
                raise ConfigError(f"the values of {name} are empty.")
            for value in values:
                problem = h.problem(value)
                if problem:
                    raise ConfigError(f"{name}={value!r} is not allowed with --method={method}: {problem}.")
        for name, (low, high) in self.ranges.items():
            h = spec.hyperparameter(name)
            if h.kind != "float" or not low < high or h.problem(low) or h.problem(high) or (h.log and low <= 0):
                raise ConfigError(
                    f"{name} range ({low:g}, {high:g}) is not allowed: low < high, both {h.range_text()}"
                    + (" and > 0 (log scale)." if h.log else ".")
                )
        if not self.values and not self.ranges:
            raise ConfigError(
                f"nothing to search for --method={method}: give values (e.g. --learning_rates=0.001,0.0001)."
            )
        return self


def _choice(hp: kt.HyperParameters, name: str, values):
    values = list(dict.fromkeys(values))
    return hp.Choice(name, values) if len(values) > 1 else hp.Fixed(name, values[0])


class MethodHyperModel(kt.HyperModel):
    """Builds the base config's method with the hyperparameters ``hp`` chooses, and trains it.

    Args:
      base: the experiment config (method, architecture, protocol, ...); its
        searched fields are overridden per trial.
      dataset: the noisy dataset (trials train on its training stream).
      space: the :class:`SearchSpace`.
      init_weights: a CE run's weights (``--init_from``) for FW / DMI / "+init".
    """

    def __init__(self, base: ExperimentConfig, dataset: data_lib.NoisyDataset, space: SearchSpace, init_weights=None):
        super().__init__(name=f"{base.method}_hypermodel", tunable=True)
        self.base = base.for_data(dataset.input_shape, len(dataset.train))  # the data's recipe for the auto settings
        self.dataset = dataset
        self.space = space.validate(base.method)
        self.init_weights = init_weights
        self.execution = 0  # set by the tuner before each execution of a trial

    def config_for(self, hp: kt.HyperParameters) -> ExperimentConfig:
        """The experiment config of one trial (also used to retrain the best trial)."""
        changes = {}
        for h in self.base.spec.hyperparameters:
            if h.name not in self.space.values and h.name not in self.space.ranges:
                continue
            if not h.active({**self.base.to_dict(), **changes}):
                continue  # e.g. sigma_q without "+S"
            with contextlib.ExitStack() as scopes:
                for parent, wanted in h.when:
                    if parent in changes:  # a searched condition: KerasTuner's conditional scope
                        scopes.enter_context(hp.conditional_scope(parent, [wanted]))
                changes[h.name] = self._value(hp, h)
        return self.base.replace(**changes)

    def _value(self, hp: kt.HyperParameters, h: methods.Hyperparameter):
        if h.name in self.space.ranges:
            low, high = self.space.ranges[h.name]
            return hp.Float(h.name, low, high, sampling="log" if h.log else "linear")
        return _choice(hp, h.name, self.space.values[h.name])

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        config = self.config_for(hp)
        keras.utils.set_random_seed(config.seed + self.execution)
        ctx = builders.MethodContext(
            config,
            self.dataset.num_classes,
            self.dataset.input_shape,
            init_weights=self.init_weights,
            train_inputs=data_lib.to_tf_dataset(self.dataset, "train", batch_size=1024, inputs_only=True),
            steps_per_epoch=data_lib.steps_per_epoch(self.dataset, config.resolved_batch_size(len(self.dataset.train))),
            input_mean=tuple(self.dataset.mean),
            input_std=tuple(self.dataset.std),
        )
        return builders.build_method(ctx)

    def fit(self, hp, model, *args, **kwargs):
        """Trains on the runner's training stream (from ``initial_epoch`` on, as Hyperband resumes)."""
        del args
        config = self.config_for(hp)
        epochs = kwargs.pop("epochs", config.epochs)
        initial = kwargs.get("initial_epoch", 0)
        train, steps = data_lib.training_stream(
            self.dataset,
            batch_size=config.resolved_batch_size(len(self.dataset.train)),
            epochs=epochs,
            seed=config.seed + self.execution,
            first_epoch=initial,
        )
        # The runner's selection: the same validation pass, NaN guard, best epoch and patience.
        kwargs.pop("validation_data", None)
        protocol = callbacks_lib.ProtocolState(None, callbacks_lib.initial_state(), config.patience, None)
        selection = train_lib.selection_callbacks(
            model, config.replace(track_test_accuracy=False), self.dataset, protocol, False
        )
        kwargs["callbacks"] = [*selection, *kwargs.get("callbacks", [])]
        return model.fit(train, steps_per_epoch=steps, epochs=epochs, shuffle=False, **kwargs)
