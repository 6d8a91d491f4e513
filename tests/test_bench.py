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
  assert [r["phase"] for r in rows] == ["train", "train"]   # one phase, one row per framework
  for r in rows:
    assert r["batch"] == [8, 5, 32, 32, 3] and r["train_step_ms"] > 0
  assert rows[1]["train_vs_eager"] == 1.0
  assert rows[0]["train_vs_eager"] == pytest.approx(
      rows[1]["train_step_ms"] / rows[0]["train_step_ms"], rel=0.02)


@pytest.mark.slow   # ~65 s: two phases' steps per framework, compiled and timed
def test_models_bench_times_every_phase_of_a_multi_phase_method(tmp_path):
  """f2lm's generator and Destroyer phases get a row each per framework, with per-frame inputs
  (flow, class maps) in the batch; the score step is timed once, on the first phase's row."""
  pytest.importorskip("torch")
  out = subprocess.run(
      [sys.executable, str(ROOT / "bench" / "models.py"), "--methods", "f2lm", "--batch", "8",
       "--repeats", "1", "--out", str(tmp_path), "model.width=0.0625", "model.d_width=0.0625"],
      capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  (result,) = tmp_path.glob("models_*.json")
  rows = json.loads(result.read_text())["rows"]
  assert [(r["framework"], r["phase"]) for r in rows] == [
      ("jaxvad", "generator"), ("jaxvad", "destroyer"),
      ("pytorch eager", "generator"), ("pytorch eager", "destroyer")]
  for r in rows:
    assert "error" not in r, r
    assert r["batch"] == [8, 5, 64, 64, 3] and r["train_step_ms"] > 0
  for jax_row, torch_row in zip(rows[:2], rows[2:]):   # each phase against its own baseline
    assert torch_row["train_vs_eager"] == 1.0
    assert jax_row["train_vs_eager"] == pytest.approx(
        torch_row["train_step_ms"] / jax_row["train_step_ms"], rel=0.02)
  assert rows[0]["score_frames_per_s"] > 0 and rows[2]["score_frames_per_s"] > 0
  assert rows[1]["score_frames_per_s"] is None and rows[3]["score_frames_per_s"] is None
  assert rows[0]["train_gflop"] > rows[1]["train_gflop"] > 0
  table = (tmp_path / result.name.replace(".json", ".md")).read_text()
  assert "| phase |" in table and "| f2lm | pytorch eager | destroyer |" in table


@pytest.mark.slow   # ~1 min: the two phases' jaxvad steps compiled for the appetite
def test_pipeline_bench_answers_input_bound_with_frame_inputs():
  """For a method with per-frame inputs: their host computation per flow method, the grain
  pipeline with them attached, and a verdict against each phase's appetite in windows/s."""
  out = subprocess.run(
      [sys.executable, str(ROOT / "bench" / "pipeline.py"), "--config", "f2lm_demo",
       "--batches", "3", "--repeats", "1", "train.batch_size=8", "model.width=0.0625",
       "model.d_width=0.0625"],
      capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  text = out.stdout
  assert "cores)" in text.splitlines()[0]   # the CPU model line
  for row in ("frame inputs on the host (model.motion = dis;",
              "frame inputs on the host (model.motion = farneback;",
              "grain windows + batches + per-frame flow, classes",
              "training step consumes (generator)", "training step consumes (destroyer)"):
    assert row in text, row
  for phase in ("generator", "destroyer"):
    line = next(l for l in text.splitlines() if l.startswith(f"input-bound ({phase}): "))
    assert re.search(r": (yes|no) \(grain with per-frame flow, classes delivers [\d,.]+ "
                     r"windows/s, the step consumes [\d,.]+ = [\d.]+ steps/s x 8: [\d.]+x\)$",
                     line), line
  assert re.search(r"frame inputs of the \d+ training frames: [\d.]+ s, once before training",
                   text)


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
