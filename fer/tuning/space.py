"""A search space written in Hydra's override grammar (as hydra-optuna-sweeper reads it, so lightning-hydra-
template configs carry over), turned into Optuna distributions:

    choice(a, b, ...)              categorical; lists and dicts are allowed ([0.9,1.1]) and travel as override text
    range(start, stop[, step])     a grid of integers (or floats), stop excluded as in Python and Hydra
    interval(low, high)            uniform; integers when both ends are integers
    tag(log, interval(low, high))  log-uniform
    anything else                  a fixed value, applied to every trial
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fer.errors import UserError


@dataclass(frozen=True)
class SearchSpace:
    distributions: dict[str, Any]  # override key -> optuna distribution
    fixed: list[str]  # overrides every trial gets, as written

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """One trial's overrides: the fixed ones, then its sampled values."""
        return self.fixed + [f"{key}={_as_override_text(value)}" for key, value in params.items()]


def _as_override_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_as_override_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_as_override_text(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "null"
    return str(value)


def _choice(value: Any) -> Any:
    """Optuna's categorical choices are None, bool, int, float or str: a list or dict travels as its override
    text, which Hydra parses back when the trial's overrides are applied."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else _as_override_text(value)


def choice_values(values: dict[str, Any]) -> dict[str, Any]:
    """Given values (hydra.sweeper.enqueue) as the trials' params hold them: lists and dicts as override text."""
    return {key: _choice(value) for key, value in values.items()}


def parse_search_space(params: dict[str, Any], arguments: list[str]) -> SearchSpace:
    """`hydra.sweeper.params` (key -> override value text) and the sweep's command-line `arguments` as a
    SearchSpace: a sweep (choice, range, interval) is searched, anything else is passed to every trial as written
    (Hydra composes each trial from these overrides alone); the command line wins over params. A mistake names its
    key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    parser = OverridesParser.create()
    distributions: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    written = [(f"hydra.sweeper.params.{k}={v}", f"{k}={v}") for k, v in params.items()]
    for where, text in written + [(arg, arg) for arg in arguments]:
        try:
            override = parser.parse_override(text)
        except HydraException as exc:
            raise UserError(f"{where}: {str(exc).splitlines()[0]}") from exc
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if not override.is_sweep_override():
            fixed[key] = text
            continue
        sweep = override.value()
        if isinstance(sweep, ChoiceSweep):
            distributions[key] = CategoricalDistribution([_choice(v) for v in sweep.list])
        elif isinstance(sweep, RangeSweep):
            values = list(override.sweep_iterator())
            if not values:
                raise UserError(f"{where}: an empty range")
            step = sweep.step if sweep.step is not None else 1
            if all(isinstance(v, int) for v in values):  # stop excluded: the last value is the high end
                distributions[key] = IntDistribution(values[0], values[-1], step=int(step))
            else:
                distributions[key] = FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
        elif isinstance(sweep, IntervalSweep):
            log = "log" in sweep.tags
            if isinstance(sweep.start, int) and isinstance(sweep.end, int):
                distributions[key] = IntDistribution(sweep.start, sweep.end, log=log)
            else:
                distributions[key] = FloatDistribution(float(sweep.start), float(sweep.end), log=log)
        else:
            raise UserError(f"{where}: use choice(), range(), interval() or tag(log, interval()) for a "
                            "searched value")
    return SearchSpace(distributions, list(fixed.values()))


def suggest(trial, space: SearchSpace) -> dict[str, Any]:
    """The trial's values for every searched key, drawn through Optuna's public suggest API."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    values = {}
    for key, dist in space.distributions.items():
        if isinstance(dist, CategoricalDistribution):
            values[key] = trial.suggest_categorical(key, dist.choices)
        elif isinstance(dist, FloatDistribution):
            values[key] = trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            values[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return values
