"""``--hint-weight auto``: λ of eq. (1) resolved on the FeatureSpec (``parts.hint_weight``)."""
import dataclasses

import numpy as np
import pytest
from test_model import SMALL, SPEC, labels, rows

from rocket_ctr.config.hint import HintConfig
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import FieldError
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.model.parts import AUTO_HINT_WEIGHT, hint_weight
from rocket_ctr.model.rocket import RocketModel

EMBEDDED = dataclasses.replace(SPEC, user_features=(*SPEC.user_features, IdFeature("user_id", buckets=20)))
BOOSTER_ONLY = dataclasses.replace(
    SPEC, user_features=(*SPEC.user_features, IdFeature("user_id", buckets=20, booster_only=True)))


def _ce(logits, y):
    return np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))


def test_auto_is_the_measured_weight_where_the_user_id_is_embedded_for_both_towers_and_zero_elsewhere():
    auto = HintConfig(weight=None)
    assert hint_weight(EMBEDDED, auto) == AUTO_HINT_WEIGHT == 0.5
    assert hint_weight(SPEC, auto) == 0.0  # no user id
    assert hint_weight(BOOSTER_ONLY, auto) == 0.0  # the light tower cannot read it
    assert hint_weight(SPEC, HintConfig(weight=0.3)) == 0.3 == hint_weight(EMBEDDED, HintConfig(weight=0.3))


@pytest.mark.parametrize("spec, weight", [(EMBEDDED, AUTO_HINT_WEIGHT), (SPEC, 0.0)])
def test_eq1_under_auto_weighs_the_hint_by_the_resolved_weight(spec, weight):
    model = RocketModel(spec, RocketConfig(**{**SMALL, "hint_weight": "auto"}))
    x = {**rows(), "user_id": np.arange(16) % 20}
    out = model(x, training=False)
    y = labels().numpy()
    l, z = out["light"].numpy(), out["booster"].numpy()
    expected = np.mean(_ce(l, y)) + np.mean(_ce(z, y)) + weight * np.mean((l - z) ** 2)
    assert model.hint_weight == weight
    # float32 means of 16 non-negative terms (and exp/log1p to an ulp or two): within ~20·eps32 ≈ 1.2e-6
    assert float(model.compute_loss(x, labels(), out)) == pytest.approx(expected, rel=1e-5)


def test_auto_is_read_from_flags_and_files_and_other_words_are_refused():
    assert RocketConfig(hint_weight="auto").hint.weight is None
    assert RocketConfig.from_saved(RocketConfig(hint_weight="auto").to_dict()).hint.weight is None
    with pytest.raises(FieldError, match="hint.weight must be a number or auto, got 'half'"):
        RocketConfig(hint_weight="half")
