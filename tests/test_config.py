import pytest

from jaxvad import config as config_lib
from jaxvad.errors import ConfigError


def test_every_shipped_config_loads():
  names = config_lib.available_configs()
  assert "demo" in names
  from jaxvad import methods
  for name in names:
    cfg = config_lib.load_config(name)
    assert cfg.method in methods.names() and cfg.name == name


def test_overrides_are_typed():
  cfg = config_lib.load_config("convlstm_ae_demo", ["train.steps=7", "model.features=[4, 8]",
                                        "data.grayscale=false", "data.scene=conveyor",
                                        "train.learning_rate=1"])
  assert cfg.train.steps == 7
  assert cfg.model.features == (4, 8)
  assert cfg.data.grayscale is False
  assert cfg.data.scene == "conveyor"
  assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)


@pytest.mark.parametrize("override, message", [
    ("train.stepz=3", "train.stepz"),
    ("bogus.key=1", "bogus"),
    ("train.steps=abc", "train.steps must be an integer"),
    ("train.steps=1.5", "train.steps must be an integer"),
    ("train.steps=0", "train.steps"),
    ("data.grayscale=1", "data.grayscale must be true or false"),
    ("model.features=3", "model.features must be a list"),
    ("model.features=[4, 'x']", r"model.features\[1\]"),
    ("train.compute_dtype=float16", "train.compute_dtype"),
    ("data.size=[64]", "data.size"),
    ("model.batch_chunks=-1", "model.batch_chunks"),
    ("method=nope", "unknown method 'nope'"),
    ("no_equals_sign", "section.key=value"),
])
def test_bad_values_name_the_key(override, message):
  with pytest.raises(ConfigError, match=message):
    config_lib.load_config("convlstm_ae_demo", [override])


def test_unknown_config_and_bad_file(tmp_path):
  with pytest.raises(ConfigError, match="unknown config 'nope'.*demo"):
    config_lib.load_config("nope")
  bad = tmp_path / "bad.toml"
  bad.write_text("name = [unclosed")
  with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
    config_lib.load_config(bad)
  with pytest.raises(ConfigError, match="does not exist"):
    config_lib.load_config(tmp_path / "missing.toml")


def test_round_trip_through_dict():
  cfg = config_lib.load_config("convlstm_ae_demo", ["train.steps=9"])
  again = config_lib.config_from_dict(cfg.to_dict())
  assert again == cfg


def test_config_choices_match_the_modules_they_name():
  from jaxvad.evaluation import protocol, thresholds
  from jaxvad.data import public
  assert set(config_lib.PROTOCOL_NAMES) == set(protocol.PROTOCOLS)
  assert set(config_lib.THRESHOLD_PARAMS) == set(thresholds.METHODS) - {"grid_search"}
  assert set(config_lib.PUBLIC_LAYOUTS) == set(public.LAYOUTS) - {"synth"}


@pytest.mark.parametrize("override, key", [
    ("score.protocol=ucsd", "score.protocol"),
    ("score.threshold=best", "score.threshold"),
    ("data.dataset=avenue", "data.size"),  # public datasets need an explicit frame size
])
def test_evaluation_choices_are_validated(override, key):
  with pytest.raises(ConfigError, match=key):
    config_lib.load_config("convlstm_ae_demo", [override])


@pytest.mark.parametrize("overrides, message", [
    (["data.roi=[1, 2, 3]"], r"data.roi = \(1, 2, 3\) is invalid: expected \[\] \(the whole "
                             r"frame\) or \[x, y, w, h\]"),
    (["data.roi=[-1, 0, 4, 4]"], r"data.roi = \(-1, 0, 4, 4\) is invalid"),
    (["data.roi=[0, 0, 0, 4]"], r"data.roi = \(0, 0, 0, 4\) is invalid"),
    (["data.roi=[0, 0, 4, 2.5]"], r"data.roi\[3\] must be an integer"),
    (["data.roi=[0, 0, true, 4]"], r"data.roi\[2\] must be an integer"),
    (["data.size=[16, 24]", "data.roi=[8, 0, 17, 4]"],
     r"data.roi = \(8, 0, 17, 4\) is invalid: expected a region inside the 24x16 \(WxH\) "
     r"frames of data.size = \[16, 24\]: x \+ w <= 24"),
    (["data.size=[16, 24]", "data.roi=[0, 10, 4, 7]"], r"y \+ h <= 16"),
])
def test_roi_is_validated(overrides, message):
  with pytest.raises(ConfigError, match=message):
    config_lib.load_config("convlstm_ae_demo", overrides)


def test_roi_defaults_to_the_whole_frame_and_fits_exactly():
  assert config_lib.load_config("convlstm_ae_demo").data.roi == ()
  cfg = config_lib.load_config("convlstm_ae_demo", ["data.size=[16, 24]",
                                                    "data.roi=[4, 6, 20, 10]"])
  assert cfg.data.roi == (4, 6, 20, 10)
  # Empty data.size (the synthetic benchmark's stored size): checked when loading.
  assert config_lib.load_config("convlstm_ae_demo", ["data.roi=[0, 0, 999, 999]"]).data.roi
  mvtec = config_lib.load_config("convlstm_ae_demo", ["data.dataset=mvtec", "data.size=[8, 8]"])
  assert mvtec.data.dataset == "mvtec"
