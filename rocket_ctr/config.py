"""Training/model configuration: one dataclass, loadable from YAML/JSON, overridable from the CLI."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from rocket_ctr.errors import InputError

MODES = ("rocket", "base", "booster", "two-stage")
_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "tuple": "comma-separated integer widths", "int | None": "an integer or null"}


def _coerce(type_name: str, value):
    """A config value from YAML/JSON/CLI as its field's type (raises TypeError/ValueError)."""
    if value is None and type_name.endswith("| None"):
        return None
    if type_name == "tuple":
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        elif isinstance(value, (int, float)):
            value = [value]
        return tuple(_whole(v) for v in value)
    if type_name.startswith("int"):
        return _whole(value)
    if type_name == "float":
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if type_name == "bool":
        if not isinstance(value, bool):
            raise TypeError(value)
        return value
    if type_name == "str" and not isinstance(value, str):
        raise TypeError(value)
    return value


def _whole(value) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise TypeError(value)
    return int(value)


@dataclasses.dataclass
class RocketConfig:
    """Everything a training run is made of (saved as ``config`` in metrics.json).

    Model:
        mode: ``rocket`` (light + booster, eq. 1), ``base`` (light alone), ``booster`` (booster
            alone), ``two-stage`` (booster first, then light with the hint against it frozen).
        embedding_dim, attention_units, attention_activation, attention_softmax: shared bottom.
        light_units, light_activation: the served tower (Dense 200 → 80 → 1).
        booster_units, booster_activation, booster_batch_norm, booster_dropout, booster_l2: the
            booster, 7 × (Dense → BN → act) → 1. Default widths taper 360 → 90, which at the
            default 108-wide x costs ~6.3× the light tower's multiplications, the paper's Table 5
            ratio (its literal 720 → 90 widths were for a 576-wide x).
        hint: ``mimic`` (logit MSE), ``mse`` (probability MSE) or ``kd``; hint_weight: λ;
        temperature: T for ``kd``. hint_gate: apply the hint only on examples where the booster's
        cross-entropy on the true label is lower than the light tower's. hint_warmup: λ stays 0
        until the booster leads the light tower on the validation users, then ramps up linearly
        over the next epoch (needs validation_fraction > 0); until then the booster's gradient
        does not reach the shared bottom either, so the light tower trains as in ``base``.
        hint_launch_metric: what "leads" means: lower ``logloss`` or higher ``gauc``.
        gradient_block: the hint never updates the booster (stop_gradient on z).
        hint_trains_bottom: the hint's gradient also reaches the shared bottom through the light
            tower (the paper); off = the hint trains the light tower's own layers only.
        share: both towers read one shared bottom; off = separate embeddings/attention per tower.
        detach_light: the light tower does not train the shared bottom (EasyRec's variant).
    Training:
        epochs, batch_size, learning_rate, seed, shuffle_buffer, jit_compile (XLA train step),
        checkpoint_every (steps between checkpoints), booster_epochs (two-stage stage 1; default
        = epochs).
        validation_fraction: share of users held out of the training input and evaluated after
            every epoch (0 = none; never the eval data).
        early_stopping_patience: epochs without a better validation GAUC of the light tower (the
            booster in ``booster`` mode) before training stops; the best epoch's weights are
            restored (0 = off; needs validation_fraction > 0).
    """

    mode: str = "rocket"
    embedding_dim: int = 18
    attention_units: tuple = (80, 40)
    attention_activation: str = "sigmoid"
    attention_softmax: bool = False
    light_units: tuple = (200, 80)
    light_activation: str = "relu"
    booster_units: tuple = (360, 270, 180, 135, 90, 90, 90)
    booster_activation: str = "relu"
    booster_batch_norm: bool = True
    booster_dropout: float = 0.0
    booster_l2: float = 0.0
    hint: str = "mimic"
    hint_weight: float = 1.0
    temperature: float = 1.0
    hint_gate: bool = False
    hint_warmup: bool = True
    hint_launch_metric: str = "logloss"
    gradient_block: bool = True
    hint_trains_bottom: bool = False
    share: bool = True
    detach_light: bool = False
    epochs: int = 2
    batch_size: int = 256
    learning_rate: float = 5e-3
    seed: int = 0
    shuffle_buffer: int = 65_536
    jit_compile: bool = False
    checkpoint_every: int = 500
    booster_epochs: int | None = None
    validation_fraction: float = 0.05
    early_stopping_patience: int = 1

    def __post_init__(self):
        problems = []
        for field in dataclasses.fields(self):
            try:
                setattr(self, field.name, _coerce(field.type, getattr(self, field.name)))
            except (TypeError, ValueError):
                problems.append(f"{field.name} must be {_TYPE_WORDS.get(field.type, field.type)}, "
                                f"got {getattr(self, field.name)!r}")
        if problems:
            raise InputError("invalid config: " + "; ".join(problems))
        for name in ("attention_units", "light_units", "booster_units"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                problems.append(f"{name} must be widths >= 1, got {getattr(self, name)}")
        if not 0 <= self.validation_fraction < 0.5:
            problems.append(f"validation_fraction must be in [0, 0.5), got {self.validation_fraction}")
        if self.early_stopping_patience < 0:
            problems.append(f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}")
        if self.booster_epochs is not None and self.booster_epochs < 1:
            problems.append(f"booster_epochs must be >= 1, got {self.booster_epochs}")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.hint_launch_metric not in ("logloss", "gauc"):
            problems.append(f"hint_launch_metric must be logloss or gauc, got {self.hint_launch_metric!r}")
        if self.hint not in ("mimic", "mse", "kd"):
            problems.append(f"hint must be mimic, mse or kd, got {self.hint!r}")
        for name in ("epochs", "batch_size", "embedding_dim", "checkpoint_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.temperature <= 0 or self.hint_weight < 0:
            problems.append("learning_rate and temperature must be > 0 and hint_weight >= 0")
        if not 0 <= self.booster_dropout < 1:
            problems.append(f"booster_dropout must be in [0, 1), got {self.booster_dropout}")
        if problems:
            raise InputError("invalid config: " + "; ".join(problems))

    @property
    def warmup_active(self) -> bool:
        """Whether the hint warm-up runs: it needs validation users to compare the towers on."""
        return self.hint_warmup and self.validation_fraction > 0 and self.mode == "rocket"

    @property
    def early_stopping_active(self) -> bool:
        """Whether early stopping runs: it needs validation users."""
        return self.early_stopping_patience > 0 and self.validation_fraction > 0

    @property
    def towers(self) -> tuple:
        """Towers the mode builds."""
        return {"base": ("light",), "booster": ("booster",)}.get(self.mode, ("light", "booster"))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **overrides) -> "RocketConfig":
        """A copy with the non-None ``overrides`` applied (CLI flags override file values)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise InputError(f"unknown config keys {sorted(unknown)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_file(cls, path: str | Path) -> "RocketConfig":
        """Loads a YAML or JSON file of RocketConfig fields."""
        try:
            text = Path(path).read_text()
            data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as err:
            raise InputError(f"{path}: cannot read config ({str(err).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: config must be a mapping of field: value")
        return cls().replace(**data)
