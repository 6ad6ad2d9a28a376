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

from genreops.errors import TrainingError

FAMILIES = ("xgboost", "random_forest", "knn")
CLASS_BALANCE = ("weights", "oversample", "none")
# Families that accept per-class weights; KNN has none, so it may only oversample.
WEIGHTED_FAMILIES = ("xgboost", "random_forest")
DEFAULT_SPACE_FILE = Path(__file__).resolve().parents[2] / "configs" / "search_spaces.yaml"

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


class SearchSpace:
    """The tunable and fixed parameters of one family."""

    def __init__(self, family: str, params: dict[str, Distribution | Scalar]) -> None:
        self.family = family
        self.params = params
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
        return SearchSpace(self.family, params)

    def fixed(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if not isinstance(v, BaseModel)}

    def as_dict(self) -> dict[str, Any]:
        """Plain data, to log next to the model."""
        return {
            k: v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v
            for k, v in self.params.items()
        }


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
        spaces[family] = SearchSpace(
            family, {str(k): _parse_param(family, str(k), v) for k, v in params.items()}
        )
    return spaces
