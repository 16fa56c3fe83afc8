"""The tower and attention sections of the model configuration (``ModelConfig.light`` / ``.booster`` /
``.attention``)."""
from __future__ import annotations

import dataclasses

from rocket_ctr.config.fields import option


@dataclasses.dataclass
class AttentionConfig:
    """DIN attention of the bottom (local activation unit over [h, c, h − c, h ⊙ c])."""

    units: tuple = option((80, 40), help="attention MLP widths, comma-separated", minimum=1)
    activation: str = option("sigmoid", help="attention hidden activation (DIN: sigmoid or dice; relu, prelu)")
    softmax: bool = option(False, help="normalise attention weights over valid steps (DIN's default: no)")


@dataclasses.dataclass
class TowerConfig:
    """One tower: hidden Dense widths (→ BatchNorm → activation → Dropout), then one logit."""

    units: tuple = option((200, 80), help="hidden widths, comma-separated", minimum=1)
    activation: str = option("relu", help="hidden activation (relu, dice, prelu or any Keras name)")
    batch_norm: bool = option(False, help="BatchNorm between each Dense and its activation")
    dropout: float = option(0.0, help="dropout after each hidden layer", minimum=0.0, below=1.0)
    l2: float = option(0.0, help="L2 penalty on the Dense kernels", minimum=0.0)


def booster_tower() -> TowerConfig:
    # 360 → 90: ~6.3× the light tower's multiplications at a 108-wide x (the paper's Table 5 ratio)
    return TowerConfig(units=(360, 270, 180, 135, 90, 90, 90), batch_norm=True)
