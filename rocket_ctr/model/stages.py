"""Two-stage training and the model's variable groups (``RocketModel``'s mixin): which variables
belong to one tower, which to the bottom the towers share, and the switch between the stages of
``--mode two-stage``."""
from __future__ import annotations


class StagesMixin:
    """Stages and variable groups of :class:`rocket_ctr.model.rocket.RocketModel`.

    Reads the model's ``config``, ``stage``, ``towers``, ``separate`` and its layer accessors
    (``bottom_of``, ``interests_of``, ``serving_layers``).
    """

    def set_stage(self, stage: str, initialise: bool = True) -> None:
        """two-stage mode: ``booster`` (stage 1) or ``light`` (stage 2, booster frozen).

        Entering stage 2 initialises the light bottom from the trained booster bottom (the
        paper's "no joint training" baseline: the embeddings, and the attention when the light
        tower reads a copy of the booster's; ``initialise=False`` when resuming inside stage 2,
        whose light bottom comes from the checkpoint) and freezes the booster and its bottom.
        """
        if self.config.mode != "two-stage" or stage not in ("booster", "light"):
            raise ValueError(f"set_stage({stage!r}) is only for two-stage mode")
        if stage == "light" and self.stage != "light" and initialise:
            for target, source in zip(self._bottom_weights("light"), self._bottom_weights("booster")):
                target.assign(source)
        self.stage = stage
        for tower in self.towers:
            trainable = tower == stage
            for layer in self.serving_layers(tower):
                layer.trainable = trainable

    def _bottom_weights(self, tower: str) -> list:
        """A tower's bank and, when the light tower reads the booster's kind of attention, its extractor."""
        layers = [self.bottom_of(tower)]
        if self.config.light_interest == "shared":
            layers += self.interests_of(tower)
        return [v for layer in layers for v in layer.weights]

    def tower_variables(self, tower: str) -> list:
        """Variables only this tower uses: its MLP, its own extractor, its own bank when not shared
        (the booster: also its booster-only column tables and cross stack)."""
        own = list(getattr(self, tower).weights)
        own += [v for layer in self._booster_only_layers(tower) for v in layer.weights]
        if self.separate:
            own += self.bottom_of(tower).weights
        if self.separate or self.config.light_interest != "shared":
            own += [v for extractor in self.interests_of(tower) for v in extractor.weights]
        return own

    def shared_variables(self) -> list:
        """Variables of the shared bottom: the embedding tables and, with ``light_interest="shared"``,
        the attention (empty when towers have separate bottoms)."""
        return [] if self.separate else self._bottom_weights(self.towers[0])
