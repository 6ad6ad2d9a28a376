"""Optuna search spaces read from YAML (``configs/search_spaces.yaml``), validated up front.

Spaces live in config, not code, so a user can widen or pin a parameter without a release;
validation names the family and parameter at fault before any trial runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from genreops.core.errors import TrainingError
from genreops.core.resources import config_file

SOFT_VOTE = "soft_vote"
# Single models, tuned on their own; a soft vote averages the probabilities of some of them.
MODEL_FAMILIES = ("xgboost", "random_forest", "knn", "svc", "logistic_regression")
FAMILIES = (*MODEL_FAMILIES, SOFT_VOTE)
CLASS_BALANCE = ("weights", "oversample", "none")
# Families that accept per-class weights; KNN has none, so it may only oversample.
WEIGHTED_FAMILIES = ("xgboost", "random_forest", "svc", "logistic_regression")
# A soft vote's members come from the same training run (or the newest one on the same table).
DEFAULT_MEMBERS = ("svc", "xgboost", "logistic_regression")
DEFAULT_SPACE_FILE = config_file("search_spaces.yaml")  # shipped as genreops.configs

Scalar = str | int | float | bool | None


class IntRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["int"]
    low: int
    high: int
    step: int = 1
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        return self


class FloatRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["float"]
    low: float
    high: float
    step: float | None = None
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class Categorical(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)


Distribution = Annotated[IntRange | FloatRange | Categorical, Field(discriminator="type")]


_DISTRIBUTION: TypeAdapter[IntRange | FloatRange | Categorical] = TypeAdapter(Distribution)


def _parse_param(family: str, name: str, raw: Any) -> Distribution | Scalar:
    if not isinstance(raw, dict):
        if isinstance(raw, str | int | float | bool) or raw is None:
            return raw
        raise TrainingError(f"search space {family}.{name}: {raw!r} is neither a value nor a range")
    try:
        return _DISTRIBUTION.validate_python(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(f".{p}" for p in first["loc"][1:])
        raise TrainingError(
            f"search space {family}.{name}{where}: {first['msg']} (got {raw!r})"
        ) from error


def weight_name(member: str) -> str:
    """The soft vote's parameter holding one member's weight."""
    return f"weight_{member}"


class SearchSpace:
    """The tunable and fixed parameters of one family.

    A soft vote's space is its ``members`` (families, two or more) and one ``weights``
    distribution (or fixed value) that each member's weight is drawn from; ``params`` then
    holds ``weight_<member>`` per member, and ``members`` the families in order.
    """

    def __init__(
        self,
        family: str,
        params: dict[str, Distribution | Scalar],
        members: tuple[str, ...] = (),
    ) -> None:
        self.family = family
        self.params = params
        self.members = members
        if family == SOFT_VOTE:
            if len(members) < 2:
                raise TrainingError(f"search space {family}.members: need two or more families")
            return
        balance = params.get("class_balance", "none")
        allowed = (
            CLASS_BALANCE
            if family in WEIGHTED_FAMILIES
            else tuple(c for c in CLASS_BALANCE if c != "weights")
        )
        options = balance.choices if isinstance(balance, Categorical) else [balance]
        for option in options:
            if option not in allowed:
                raise TrainingError(
                    f"search space {family}.class_balance: {option!r} is not one of {allowed}"
                )

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Parameters of one trial: fixed values as they are, distributions sampled."""
        chosen: dict[str, Any] = {}
        for name, spec in self.params.items():
            if isinstance(spec, IntRange):
                chosen[name] = trial.suggest_int(
                    name, spec.low, spec.high, step=spec.step, log=spec.log
                )
            elif isinstance(spec, FloatRange):
                chosen[name] = trial.suggest_float(
                    name, spec.low, spec.high, step=spec.step, log=spec.log
                )
            elif isinstance(spec, Categorical):
                chosen[name] = trial.suggest_categorical(name, spec.choices)
            else:
                chosen[name] = spec
        return chosen

    def capped(self, name: str, maximum: int) -> SearchSpace:
        """The same space with an integer parameter limited to ``maximum`` (e.g. KNN's
        neighbours to the rows there are to fit on)."""
        spec = self.params.get(name)
        params = dict(self.params)
        if isinstance(spec, IntRange) and spec.high > maximum:
            params[name] = spec.model_copy(update={"low": min(spec.low, maximum), "high": maximum})
        elif isinstance(spec, int) and not isinstance(spec, bool) and spec > maximum:
            params[name] = maximum
        return SearchSpace(self.family, params, self.members)

    def fixed(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if not isinstance(v, BaseModel)}

    def as_dict(self) -> dict[str, Any]:
        """Plain data, to log next to the model."""
        plain = {
            k: v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v
            for k, v in self.params.items()
        }
        return {"members": list(self.members), **plain} if self.members else plain


def _soft_vote_space(path: Path, params: dict[str, Any]) -> SearchSpace:
    """``members: [families]`` and ``weights: <value or distribution>``; nothing else."""
    where = f"{path}: search space {SOFT_VOTE}"
    unknown = sorted(set(params) - {"members", "weights"})
    if unknown:
        raise TrainingError(f"{where}.{unknown[0]}: unknown parameter (use members, weights)")
    members = params.get("members", list(DEFAULT_MEMBERS))
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise TrainingError(f"{where}.members: expected a list of families (got {members!r})")
    for member in members:
        if member not in MODEL_FAMILIES:
            raise TrainingError(
                f"{where}.members: {member!r} is not one of {', '.join(MODEL_FAMILIES)}"
            )
    if len(set(members)) != len(members) or len(members) < 2:
        raise TrainingError(f"{where}.members: need two or more different families")
    weights = _parse_param(SOFT_VOTE, "weights", params.get("weights", 1.0))
    if isinstance(weights, IntRange | FloatRange) and weights.low < 0:
        raise TrainingError(f"{where}.weights: weights cannot be negative")
    if not isinstance(weights, BaseModel) and (
        not isinstance(weights, int | float) or isinstance(weights, bool) or weights <= 0
    ):
        raise TrainingError(f"{where}.weights: expected a positive number or a range")
    return SearchSpace(SOFT_VOTE, {weight_name(m): weights for m in members}, tuple(members))


def load_search_spaces(path: Path | None = None) -> dict[str, SearchSpace]:
    """All families' spaces from a YAML file (default: the project's configs/)."""
    path = path or DEFAULT_SPACE_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(f"{path}: search space file not found") from None
    except yaml.YAMLError as error:
        raise TrainingError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise TrainingError(f"{path}: expected a mapping of family -> parameters")
    unknown = sorted(set(raw) - set(FAMILIES))
    if unknown:
        raise TrainingError(f"{path}: unknown model family {unknown[0]!r} (known: {FAMILIES})")
    spaces = {}
    for family, params in raw.items():
        if not isinstance(params, dict) or not params:
            raise TrainingError(f"{path}: {family}: expected a mapping of parameters")
        if family == SOFT_VOTE:
            spaces[family] = _soft_vote_space(path, params)
            continue
        spaces[family] = SearchSpace(
            family, {str(k): _parse_param(family, str(k), v) for k, v in params.items()}
        )
    return spaces
