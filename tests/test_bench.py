"""bench/ scripts run end to end at tiny sizes (their numbers are measured, not asserted)."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
