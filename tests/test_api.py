"""The public names of ``import rocket_ctr`` resolve to the library's objects."""
import rocket_ctr


def test_public_api_resolves():
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.train.trainer import Trainer

    assert rocket_ctr.FeatureSpec is FeatureSpec and rocket_ctr.Trainer is Trainer
    for name in rocket_ctr.__all__:
        if name != "export_light" or _has_export():
            assert getattr(rocket_ctr, name) is not None


def _has_export():
    import importlib.util
    return importlib.util.find_spec("rocket_ctr.export.writer") is not None
