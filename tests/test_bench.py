"""bench/ scripts run end to end at tiny sizes (their numbers are measured, not asserted)."""

import json
import math
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


TORCH_CPU = ["pytorch eager", "pytorch eager channels-last", "pytorch eager no-onednn"]


def _fake(framework, dtype, train_ms, score_ms=None, phase="train"):
  return {"framework": framework, "dtype": dtype, "phase": phase, "train_step_ms": train_ms,
          "score_step_ms": score_ms}


def test_ratios_are_against_the_fastest_pytorch_configuration():
  """float32 rows against the fastest float32 PyTorch configuration (AMP left out), bf16 rows
  against every one; train and score each against their own fastest, per phase."""
  from bench import models
  rows = [_fake("jaxvad", "float32", 50.0, 10.0), _fake("jaxvad", "bfloat16", 20.0, 4.0),
          _fake("pytorch eager", "float32", 100.0, 8.0),
          _fake("pytorch eager channels-last", "float32", 40.0, 16.0),
          _fake("pytorch eager no-onednn", "float32", 400.0, 20.0),
          _fake("pytorch amp", "bf16 amp", 10.0, 2.0),
          _fake("jaxvad", "float32", 7.0, phase="destroyer"),
          _fake("pytorch eager", "float32", 14.0, phase="destroyer"),
          {"framework": "pytorch compile", "phase": "all", "dtype": "float32", "error": "x"}]
  models.add_ratios(rows)
  jax32, jax16, eager, cl, no_onednn, amp, destroyer, torch_destroyer, failed = rows
  assert models.best_torch(rows, phase="train", dtype="float32", key="train_step_ms") is cl
  assert models.best_torch(rows, phase="train", dtype="bfloat16", key="train_step_ms") is amp
  assert (jax32["train_vs_torch"], jax32["train_torch_ref"]) == (0.8, cl["framework"])
  assert (jax32["score_vs_torch"], jax32["score_torch_ref"]) == (0.8, "pytorch eager")
  assert (jax16["train_vs_torch"], jax16["train_torch_ref"]) == (0.5, "pytorch amp (bf16 amp)")
  assert jax16["score_vs_torch"] == 0.5
  assert cl["train_vs_torch"] == 1.0 and eager["train_vs_torch"] == 0.4
  assert no_onednn["train_vs_torch"] == 0.1 and amp["train_vs_torch"] == 1.0
  assert (destroyer["train_vs_torch"], destroyer["train_torch_ref"]) == (2.0, "pytorch eager")
  assert "score_vs_torch" not in destroyer and torch_destroyer["train_vs_torch"] == 1.0
  assert "train_vs_torch" not in failed
  assert models.best_torch(rows, phase="other", dtype="float32", key="train_step_ms") is None


def test_torch_configs_per_device_and_cpu_flags():
  from bench import models, timing
  names = lambda cs: [c.name for c in cs]  # noqa: E731
  assert names(models.torch_configs("cpu", compile_=False, amp=False)) == TORCH_CPU
  assert names(models.torch_configs("cuda", compile_=True, amp=True)) == [
      "pytorch eager", "pytorch eager channels-last", "pytorch compile", "pytorch amp",
      "pytorch compile amp"]
  assert not models.NO_ONEDNN.onednn and not models.EAGER.channels_last
  flags = timing.cpu_flags()
  assert flags == [f for f in timing.ISA_FLAGS if f in flags]   # known flags, in that order
  assert timing.cpu_description().startswith(timing.cpu_model())


def test_hold_memory_format_sets_every_conv_input():
  torch = pytest.importorskip("torch")
  from bench import models
  seen = []
  for channels_last in (False, True):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 1))
    models.hold_memory_format(model, channels_last=channels_last)
    model[1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.zeros(2, 8, 8, 3).permute(0, 3, 1, 2)   # NCHW view of channels-last memory
    model(x)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert seen[-1].is_contiguous(memory_format=fmt)
  model = torch.nn.Conv3d(1, 2, 3)
  models.hold_memory_format(model, channels_last=True)
  model.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
  model(torch.zeros(1, 1, 4, 4, 4))
  assert seen[-1].is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.slow   # ~31 s idle: jaxvad and three PyTorch configurations compiled and timed
def test_models_bench_writes_rows_for_every_torch_configuration(tmp_path):
  pytest.importorskip("torch")
  out = subprocess.run(
      [sys.executable, str(ROOT / "bench" / "models.py"), "--methods", "predictive_ae",
       "--batch", "8", "--size", "32", "32", "--repeats", "1", "--out", str(tmp_path),
       "model.width=0.125"],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  (result,) = tmp_path.glob("models_*.json")
  result = json.loads(result.read_text())
  assert set(result["machine"]["cpu_flags"]) <= set(
      "sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16 "
      "avx_vnni avx_vnni_int8 amx_tile amx_bf16 amx_int8 amx_fp16 asimd asimddp sve sve2 bf16 "
      "i8mm sme".split())
  rows = result["rows"]
  assert [r["framework"] for r in rows] == ["jaxvad", *TORCH_CPU]
  assert [r["phase"] for r in rows] == ["train"] * 4   # one phase, one row per configuration
  for r in rows:
    assert r["batch"] == [8, 5, 32, 32, 3] and r["train_step_ms"] > 0
  best = min(rows[1:], key=lambda r: r["train_step_ms"])
  best_score = min(rows[1:], key=lambda r: r["score_step_ms"])
  assert rows[0]["train_torch_ref"] == best["framework"] and best["train_vs_torch"] == 1.0
  assert rows[0]["train_vs_torch"] == pytest.approx(
      best["train_step_ms"] / rows[0]["train_step_ms"], rel=0.02)
  assert rows[0]["score_torch_ref"] == best_score["framework"]
  table = (tmp_path / result_name(tmp_path)).read_text()
  assert "| train × best torch | best torch (train) |" in table
  assert "| predictive_ae | pytorch eager no-onednn | train | float32 |" in table
  assert f"fastest PyTorch float32 train step: {best['framework']}" in table
  assert result["machine"]["cpu"] in table.splitlines()[0]


def result_name(folder):
  """The models_<machine>.md next to the JSON in `folder`."""
  (result,) = folder.glob("models_*.json")
  return result.name.replace(".json", ".md")


@pytest.mark.slow   # ~65 s idle: two phases' steps per framework and configuration
def test_models_bench_times_every_phase_of_a_multi_phase_method(tmp_path):
  """f2lm's generator and Destroyer phases get a row each per framework and configuration,
  with per-frame inputs (flow, class maps) in the batch; the score step is timed once, on the
  first phase's row."""
  pytest.importorskip("torch")
  out = subprocess.run(
      [sys.executable, str(ROOT / "bench" / "models.py"), "--methods", "f2lm", "--batch", "8",
       "--repeats", "1", "--out", str(tmp_path), "model.width=0.0625", "model.d_width=0.0625"],
      capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  (result,) = tmp_path.glob("models_*.json")
  rows = json.loads(result.read_text())["rows"]
  assert [(r["framework"], r["phase"]) for r in rows] == [
      (f, p) for f in ["jaxvad", *TORCH_CPU] for p in ("generator", "destroyer")]
  for r in rows:
    assert "error" not in r, r
    assert r["batch"] == [8, 5, 64, 64, 3] and r["train_step_ms"] > 0
  for i, phase in enumerate(("generator", "destroyer")):   # each phase against its own best
    jax_row, torch_rows = rows[i], rows[2 + i::2]
    best = min(torch_rows, key=lambda r: r["train_step_ms"])
    assert jax_row["train_torch_ref"] == best["framework"] and best["train_vs_torch"] == 1.0
    assert jax_row["train_vs_torch"] == pytest.approx(
        best["train_step_ms"] / jax_row["train_step_ms"], rel=0.02)
  assert rows[0]["score_frames_per_s"] > 0 and rows[2]["score_frames_per_s"] > 0
  assert rows[1]["score_frames_per_s"] is None and rows[3]["score_frames_per_s"] is None
  assert rows[0]["train_gflop"] > rows[1]["train_gflop"] > 0
  table = (tmp_path / result.name.replace(".json", ".md")).read_text()
  assert "| phase |" in table and "| f2lm | pytorch eager | destroyer |" in table


def test_gpu_suite_peaks_and_plan():
  """Device kinds to bf16 peaks; the plan's order of importance."""
  from bench import gpu_suite
  peak = gpu_suite.peak_bf16_tflops
  assert peak("NVIDIA H100 80GB HBM3") == 989 and peak("NVIDIA H100 PCIe") == 756
  assert peak("NVIDIA H200") == 989 and peak("NVIDIA A100-SXM4-80GB") == 312
  assert peak("TPU v5 lite") == 197 and peak("TPU v5") == 459 and peak("TPU v4") == 275
  assert peak("cpu") is None and peak("NVIDIA L40S") == 362
  assert gpu_suite.device_counts(8) == [1, 2, 4, 8] and gpu_suite.device_counts(6) == [1, 2, 4, 6]
  assert gpu_suite.device_counts(1) == [1]
  items = gpu_suite.plan(["a", "b"], device_type="cuda", torch_methods=["a"], devices=[1, 2],
                         compile_methods=["a"], scaling_methods=["b", "a"])
  assert [i.label for i in items] == [
      "jaxvad a float32", "jaxvad b float32", "pytorch eager channels-last a",
      "jaxvad a bfloat16", "jaxvad b bfloat16", "pytorch amp a", "pytorch eager a",
      "scaling b 1 device", "scaling b 2 devices", "pytorch compile a", "pytorch compile amp a",
      "scaling a 1 device", "scaling a 2 devices"]
  cpu = gpu_suite.plan(["a"], device_type="cpu", torch_methods=["a"], devices=[1],
                       compile_methods=[], scaling_methods=["a"])
  assert [i.label for i in cpu] == [
      "jaxvad a float32", "pytorch eager a", "jaxvad a bfloat16", "pytorch amp a",
      "pytorch eager channels-last a", "pytorch eager no-onednn a"]


@pytest.mark.slow   # 283 s on 2 idle cores, 578 under load: 6 methods × 2 dtypes XLA compiles
def test_gpu_suite_smoke_reports_every_method_and_dtype(tmp_path):
  """`bench/gpu_suite.py --smoke` end to end on the 8 forced CPU devices (tests/conftest.py):
  a row per method with a bench config in both dtypes, PyTorch eager / AMP / compile rows,
  cost-analysis FLOPs and peak fractions (with an assumed peak), the 1- and 8-device scaling,
  markdown and JSON."""
  pytest.importorskip("torch")
  from jaxvad import methods
  out = subprocess.run(
      [sys.executable, str(ROOT / "bench" / "gpu_suite.py"), "--smoke", "--budget", "1500",
       "--item-s", "400", "--peak-tflops", "1", "--out", str(tmp_path / "suite")],
      capture_output=True, text=True, timeout=1800, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads((tmp_path / "suite.json").read_text())
  text = (tmp_path / "suite.md").read_text()
  assert result["devices"] == 8 and result["peak_bf16_tflops"] == 1
  assert not result["skipped"], result["skipped"]
  expected = [n for n in methods.names() if methods.get(n).bench_config]  # not tiny_test
  rows = result["rows"]
  for method in expected:
    for dtype in ("float32", "bfloat16"):
      row = next(r for r in rows if (r["method"], r["framework"], r["dtype"])
                 == (method, "jaxvad", dtype))
      assert row["train_gflop"] > 0 and 0 < row["train_peak_fraction"] < 1, row
      assert row["score_frames_per_s"] > 0 and row["train_vs_torch"] > 0
    assert {r["framework"] for r in rows if r["method"] == method} >= {
        "pytorch eager", "pytorch amp"}
  assert any(r["framework"] == "pytorch compile" for r in rows)
  for r in rows:
    assert "error" not in r, r
    for key in ("train_step_ms", "train_frames_per_s", "train_tflop_per_s"):
      assert math.isfinite(r[key]) and r[key] > 0, (key, r)
    if r.get("score_step_ms") is not None:
      assert math.isfinite(r["score_frames_per_s"]) and r["score_frames_per_s"] > 0
  assert [s["devices"] for s in result["scaling"]] == [1, 8]
  assert [s["batch"][0] for s in result["scaling"]] == [2, 16]
  assert result["scaling"][0]["efficiency"] == 1.0 and result["scaling"][1]["efficiency"] > 0
  assert "## Train and score steps" in text and "## Data-parallel scaling" in text
  assert result["machine"]["jax"] in text and result["machine"]["torch"] in text


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
