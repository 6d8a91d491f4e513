"""bench/ scripts run end to end at tiny sizes (their numbers are measured, not asserted)."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow   # ~50 s: two frameworks' steps compiled and timed; bench/, not the library
def test_models_bench_writes_rows_for_both_frameworks(tmp_path):
  pytest.importorskip("torch")
  out = subprocess.run(
      [sys.executable, str(ROOT / "bench" / "models.py"), "--methods", "predictive_ae",
       "--batch", "8", "--size", "32", "32", "--repeats", "1", "--out", str(tmp_path),
       "model.width=0.125"],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  (result,) = tmp_path.glob("models_*.json")
  rows = json.loads(result.read_text())["rows"]
  assert [r["framework"] for r in rows] == ["jaxvad", "pytorch eager"]
  for r in rows:
    assert r["batch"] == [8, 5, 32, 32, 3] and r["train_step_ms"] > 0
  assert rows[1]["train_vs_eager"] == 1.0
  assert rows[0]["train_vs_eager"] == pytest.approx(
      rows[1]["train_step_ms"] / rows[0]["train_step_ms"], rel=0.02)


@pytest.mark.slow   # ~25 s: an XLA profile of a train step; bench/, not the library
def test_profile_attributes_step_time_to_ops_and_layers(tmp_path):
  result_file = tmp_path / "profile.json"
  out = subprocess.run(
      [sys.executable, str(ROOT / "bench" / "op_profile.py"), "--method", "convlstm_ae",
       "--steps", "2", "--top", "5", "--json", str(result_file), "train.batch_size=8",
       "data.size=[16,16]", "model.features=[4,8]", "model.lstm_features=8"],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads(result_file.read_text())
  assert result["batch"] == [8, 8, 16, 16, 1] and result["wall_ms"] > 0
  assert result["threads"] >= 1 and result["op_ms"] > 0
  assert sum(k["ms"] for k in result["kinds"]) == pytest.approx(result["op_ms"])
  assert sum(k["calls"] for k in result["kinds"]) == pytest.approx(
      sum(o["calls"] for o in result["ops"]))
  # ops are traced back to the model's layers through XLA's metadata
  assert any(re.search(r"ConvLSTMAutoencoder\)+/encoder/", o["source"]) for o in result["ops"])
  model_layers = [r for r in result["layers"]
                  if r["layer"].startswith(("encoder", "convlstm", "decoder"))]
  assert sum(r["forward"] for r in model_layers) > 0
  assert sum(r["backward"] for r in model_layers) > 0
  assert sum(r["ms"] for r in result["layers"]) == pytest.approx(result["op_ms"])
  assert "| op kind | ms/step |" in out.stdout and "| layer | ms/step |" in out.stdout
