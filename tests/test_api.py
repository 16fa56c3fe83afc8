"""The public names of ``import rocket_ctr`` resolve to the library's objects."""
import rocket_ctr


def test_public_api_resolves():
    from rocket_ctr.spec import FeatureSpec
    from rocket_ctr.trainer import Trainer

    assert rocket_ctr.FeatureSpec is FeatureSpec and rocket_ctr.Trainer is Trainer
    for name in rocket_ctr.__all__:
        if name != "export_light" or _has_export():
            assert getattr(rocket_ctr, name) is not None


def _has_export():
    import importlib.util
    return importlib.util.find_spec("rocket_ctr.export") is not None
