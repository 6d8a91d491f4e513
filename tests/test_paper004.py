"""`jaxvad reproduce paper004` end to end at toy size: every row is computed, gamma is chosen
from the grid on the other benchmark, and the test-label choice is at least as good on the test
clips as equal weights (it searches a grid that holds them)."""

import numpy as np
import pytest

from jaxvad import config as config_lib
from jaxvad.data.clips import Clip
from jaxvad.errors import ConfigError
from jaxvad.evaluation import evaluate
from jaxvad.reproduce import paper004
from tests.test_cli import run_cli

SMALL = ["data.size=[32,32]", "data.stride=8", "train.steps=2", "train.checkpoint_every=2",
         "train.batch_size=8", "score.bootstrap=20"]
F2LM = [*SMALL, "model.width=0.0625", "model.d_width=0.0625", "model.patch_grid=4",
        "model.generator_steps=1"]


@pytest.mark.slow   # three trainings and 66 clips scored: about 4 min on 2 cores
def test_rows_gamma_selection_and_tables(tmp_path):
  overrides = [*F2LM, f"data.root={tmp_path / 'data'}"]
  result = paper004.run_scene(
      "pickplace", preset="tiny", workdir=tmp_path / "runs", overrides=overrides,
      baseline_overrides=[*SMALL, "model.width=0.0625", "model.d_width=0.0625",
                          f"data.root={tmp_path / 'data'}"],
      ablations=["no_labels"], train_progress=False)
  rows = result["rows"]
  assert list(rows) == ["FFP", "F2LM generator", "F2LM + Destroyer",
                        "F2LM generator error only", "Destroyer error only",
                        "F2LM + Destroyer, gamma from seed-1 split",
                        "F2LM + Destroyer, gamma from test labels", "F2LM generator, no_labels"]
  for row in rows.values():
    for group in ("all", "no_distractors", "with_distractors"):
      auroc, (lo, hi) = row["summary"][group]["auroc"], row["summary"][group]["auroc_ci"]
      assert 0 <= lo <= auroc <= hi <= 1
  selection = result["selection"]
  assert set(selection["gamma"].values()) <= set(paper004.GAMMA_GRID)
  assert any(selection["gamma"].values())
  oracle = rows["F2LM + Destroyer, gamma from test labels"]["summary"]["all"]["auroc"]
  assert oracle >= rows["F2LM + Destroyer"]["summary"]["all"]["auroc"] - 1e-9
  assert np.isclose(selection["oracle_auroc"], oracle)
  text = paper004.markdown_tables({"preset": "tiny", "scenes": {"pickplace": result}})
  assert "| F2LM generator, no_labels |" in text and "wrong_place" in text


def test_unknown_ablation_and_other_papers_options_are_refused(tmp_path, capsys):
  with pytest.raises(ConfigError, match="ablation"):
    paper004.run_scene("pickplace", preset="tiny", workdir=tmp_path, ablations=["no_gan"])
  with pytest.raises(ConfigError, match="preset"):
    paper004.run_scene("pickplace", preset="paper", workdir=tmp_path)
  code, _, err = run_cli(["reproduce", "paper004", "--ae", "train.steps=1", "--workdir",
                          tmp_path / "w", "--out", tmp_path / "o"], capsys)
  assert code == 2 and "--set" in err and "Traceback" not in err


def test_gamma_selection_weights_the_informative_term():
  """Term values made up: `motion_triplet` is high on anomalous frames, the others are noise,
  so the grid's best weights put motion first and beat every single other term."""
  config = config_lib.load_config("f2lm_demo", [])
  spec = paper004.all_terms(config)
  rng = np.random.default_rng(0)
  clips, terms = [], []
  for i in range(6):
    labels = np.zeros(40, bool)
    labels[20 + i:30 + i] = True
    clips.append(Clip(f"c{i}", np.zeros((40, 1, 1, 1), np.uint8), labels, None, None, {}))
    t = {name: rng.normal(size=40) for name in ("label_triplet", "generator_error",
                                                "destroyer_error")}
    t["motion_triplet"] = rng.normal(size=40) + 3.0 * labels
    for v in t.values():
      v[:4] = np.nan   # a frame predictor's unscored first frames
    terms.append(t)
  gamma, auc = paper004.select_gamma(config, spec, clips, terms)
  assert gamma["motion_triplet"] == max(gamma.values()) > 0
  single = paper004.select_gamma(config, evaluate.reweighted(spec, {"generator_error": 1}),
                                 clips, terms)[1]
  assert auc > 0.9 > single
