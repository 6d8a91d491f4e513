"""`score.term_weights`: a combined score's weights come from the config, or from a grid search
on labelled validation clips (never the test clips), and the result files say which."""

import pathlib

import pytest

from jaxvad import config as config_lib
from jaxvad import train
from jaxvad.data import datasets, synth
from jaxvad.errors import ConfigError
from jaxvad.evaluation import evaluate, report

HERE = pathlib.Path(__file__).parent


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """tiny_test (two terms: error 1.0, critic 0.5) trained 2 steps on the tiny benchmark."""
  root = tmp_path_factory.mktemp("weights")
  synth.write_benchmark(root / "data", scene="pickplace", preset="tiny", progress=False)
  config = config_lib.load_config(HERE / "configs" / "tiny_test.toml",
                                  [f"data.root={root / 'data'}", "score.bootstrap=20"])
  train.train(config, root / "run", progress=False)
  return root / "run"


def _evaluate(run, overrides, val_split):
  config, state = train.load_trained(run)
  raw = config.to_dict()
  for override in overrides:
    config_lib.apply_override(raw, override)
  config = config_lib.config_from_dict(raw)
  test = datasets.load_split(config.data, "test")
  val = test[:8] if val_split == "test_half" else datasets.load_split(config.data, "val")
  return evaluate.evaluate_clips(config, state, test[8:], val_clips=val)


def test_config_weights_are_recorded(run):
  result = _evaluate(run, [], "val")
  assert result["term_weights"] == {"source": "config",
                                    "weights": {"error": 1.0, "critic": 0.5}}


def test_val_grid_picks_weights_on_labelled_validation_clips(run, tmp_path):
  result = _evaluate(run, ["score.term_weights=val_grid"], "test_half")
  w = result["term_weights"]
  assert w["source"] == "val_grid" and w["val_clips"] > 0 and 0 <= w["val_auroc"] <= 1
  assert set(w["weights"].values()) <= set(evaluate.WEIGHT_GRID) and any(w["weights"].values())
  used = {t["name"]: t["weight"] for t in result["score_spec"]["terms"]}
  assert used == {k: v for k, v in w["weights"].items() if v}
  report.write_report(tmp_path / "report", result)
  assert "grid search on" in (tmp_path / "report" / "report.html").read_text()


def test_val_grid_without_labelled_validation_anomalies_is_refused(run):
  with pytest.raises(ConfigError, match="score.term_weights = val_grid needs"):
    _evaluate(run, ["score.term_weights=val_grid"], "val")
