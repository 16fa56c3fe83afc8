"""The hint section of the run configuration: the term λ·hint(l, z) of eq. (1) and when it applies."""
from __future__ import annotations

import dataclasses

from rocket_ctr.config.fields import option


@dataclasses.dataclass
class HintConfig:
    """The hint term λ·hint(l, z) of eq. (1) and when it applies."""

    loss: str = option("mimic", choices=("mimic", "mse", "kd"), flag="--hint",
                       help="mimic: logit MSE (the paper); mse: probability MSE; kd: distillation with T")
    weight: float | None = option(None, minimum=0.0,
                                  help="λ of eq. (1), how strongly the light tower follows the booster's logit; "
                                       "auto (default): 0.5 where the user id is embedded for both towers "
                                       "(--user-id-embedding: enough rows per user), 0 elsewhere; 0: no hint, the "
                                       "booster helps the light tower only through the shared embeddings "
                                       "(--booster-bottom); the paper: 1")
    temperature: float = option(1.0, help="T of the kd hint", flag="--temperature", above=0.0)
    gate: bool = option(False, help="apply the hint only where the booster's cross-entropy is lower than the "
                                    "light tower's")
    confidence: bool = option(False, help="weigh each row's hint by the booster's probability of the row's label "
                                          "(σ(z) for a click, 1 − σ(z) otherwise): a soft --hint-gate, the booster "
                                          "teaches most where it is surest and right")
    warmup: bool = option(True, help="λ stays 0 (and, with --booster-bottom after-launch, the booster off the "
                                     "shared bottom) until the booster leads the light tower on the validation "
                                     "rows (launch metric), then ramps up")
    booster_bottom: str = option("from-start", choices=("after-launch", "from-start"), flag="--booster-bottom",
                                 help="when the booster's cross-entropy starts training what the towers share "
                                      "(the embeddings): from-start (default): from the first step, a second task "
                                      "for them, while λ still waits for the launch; after-launch: with the hint, "
                                      "when the warm-up launches it")
    launch_metric: str = option("logloss", choices=("logloss", "gauc"),
                                help="what the booster must beat the light tower on, on the validation rows, "
                                     "for the warm-up to launch it")
    gradient_block: bool = option(True, flag="--gradient-block",
                                  help="the hint never updates the booster (stop_gradient on its logit)")
    trains_bottom: bool = option(False, help="the hint's gradient also trains the shared bottom (the paper); "
                                             "off: the light tower's own layers only")
    scale_to_label: bool = option(False, help="rescale the hint every batch so its gradient on the light logit is "
                                              "as large as the light cross-entropy's (mean |σ(l) − y| / mean "
                                              "|∂hint/∂l|): at a low CTR the logit MSE's 2(l − z) would dwarf it")
