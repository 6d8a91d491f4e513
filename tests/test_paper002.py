"""`jaxvad reproduce paper002` at toy size: every row is computed with intervals, the box and
softmax thresholds come from the seed-1 benchmark's grids, and the tables name every row."""

import numpy as np
import pytest

from jaxvad.errors import ConfigError
from jaxvad.evaluation import localize
from jaxvad.reproduce import paper002
from tests.test_cli import run_cli

SMALL = ["data.size=[32,32]", "data.roi=[]", "model.width=0.0625", "model.head_layers=[8]",
         "model.embed_dim=8", "train.steps=2", "train.checkpoint_every=2", "train.batch_size=8",
         "score.bootstrap=20", "score.batch_size=32"]


@pytest.mark.slow   # one training, 66 clips scored: about a minute on 2 cores
def test_rows_thresholds_and_tables(tmp_path):
  result = paper002.run_scene("pickplace", workdir=tmp_path / "runs", tasks=["both"],
                              overrides=[*SMALL, f"data.root={tmp_path / 'data'}"],
                              train_progress=False)
  row = result["rows"]["both"]
  for score in paper002.SCORES:
    for group in ("all", "no_distractors", "with_distractors"):
      summary = row["scores"][score][group]
      assert 0 <= summary["auroc_ci"][0] <= summary["auroc"] <= summary["auroc_ci"][1] <= 1
  loc = row["localization"]
  assert 0 <= loc["pixel_auroc"] <= 1 and 0 <= loc["pro"] <= 1
  assert set(loc["per_type"]) == {"dropped", "missed_pick", "stall", "wrong_place"}
  assert row["boxes"]["threshold"] in localize.BOX_THRESHOLDS
  assert row["boxes"]["detected"] <= row["boxes"]["regions"]
  assert row["softmax"]["threshold"] in localize.SOFTMAX_THRESHOLDS
  assert 0 <= row["softmax"]["normal called normal"] <= 1
  table = result["selection"]["boxes"]["both"]["table"]
  assert [r["threshold"] for r in table] == list(localize.BOX_THRESHOLDS)
  text = paper002.markdown_tables({"preset": "tiny", "scenes": {"pickplace": result}})
  assert paper002.TASKS["both"][2] in text and "wrong_place" in text and "PRO" in text


def test_softmax_rows_call_real_anomalies_unknown():
  probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8], [0.5, 0.5]])
  names = np.array(["normal", "normal", "dent", "dent"], object)
  rows = paper002._softmax_rows(probs, names, ("normal", "cutpaste"), 0.6)  # pylint: disable=protected-access
  assert rows == {"normal called normal": 0.5, "dent called unknown": 0.5}


def test_unknown_task_and_other_papers_options_are_refused(tmp_path, capsys):
  with pytest.raises(ConfigError, match="task"):
    paper002.run_scene("pickplace", workdir=tmp_path, tasks=["scar"])
  code, _, err = run_cli(["reproduce", "paper002", "--ablations", "no_se", "--workdir",
                          tmp_path / "w", "--out", tmp_path / "o"], capsys)
  assert code == 2 and "--set" in err and "Traceback" not in err
  code, _, err = run_cli(["reproduce", "paper004", "--tasks", "both", "--workdir",
                          tmp_path / "w", "--out", tmp_path / "o"], capsys)
  assert code == 2 and "Traceback" not in err
