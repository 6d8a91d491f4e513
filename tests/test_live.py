"""Live scoring (`jaxvad.live`): the same scores as offline, every frame accounted for."""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from jaxvad import cli, live
from jaxvad.data import synth, video
from jaxvad.evaluation import evaluate
from tests.test_methods import STEPS, TINY, tiny_state


def test_trailing_mean_matches_a_loop():
  rng = np.random.default_rng(0)
  x = rng.normal(size=40)
  x[[0, 1, 7, 20]] = np.nan
  for window in (1, 2, 5, 50):
    want = np.full(len(x), np.nan)
    for t in range(len(x)):
      if np.isfinite(x[t]):
        past = x[max(0, t - window + 1):t + 1]
        want[t] = past[np.isfinite(past)].mean()
    np.testing.assert_allclose(live.trailing_mean(x, window=window), want, rtol=1e-12)
  with pytest.raises(ValueError, match="window"):
    live.trailing_mean(x, window=0)


def test_ring_buffer_drops_the_oldest_and_counts_them():
  ring = live.RingBuffer(3)
  for i in range(5):
    ring.put((i, 0.0, None))
  ring.skip(7)
  items, dropped, skipped = ring.take_all(0)
  assert [i for i, _, _ in items] == [2, 3, 4] and dropped == [0, 1] and skipped == [7]
  assert ring.take_all(0) == ([], [], [])
  ring.close()
  assert ring.done


def _moving_frames(shape, count, seed=0):
  """A bright square moving over noise: flow and reconstruction errors that vary per frame."""
  rng = np.random.default_rng(seed)
  frames = rng.integers(0, 40, (count, *shape), dtype=np.uint8)
  for t in range(count):
    x = (3 * t) % (shape[1] - 6)
    frames[t, 4:10, x:x + 6] = 220
  return frames


# A reconstructor, a frame predictor, one with flow inputs and a combined score, one scoring
# single frames with a box input.
@pytest.mark.parametrize("name", ["convlstm_ae", "ffp", "f2lm", "cutpaste"])
def test_live_scores_equal_the_offline_scores(name):
  config, state, shape = tiny_state(name)
  scorer = evaluate.Scorer(config, state)
  scorer.resolve(shape[:2])
  frames = _moving_frames(shape, 23)
  offline = scorer.terms(frames)
  scorer_live = live.LiveScorer(scorer, calibration={
      "smoothing": 1, "threshold": {"value": 0.0},
      "term_stats": {t.name: [0.0, 1.0] for t in scorer.spec.terms}}, batch_size=4)
  records, t = [], 0
  for chunk in (1, 3, 2, 7, 1, 4, 5):   # frames arrive in irregular bursts
    items = [(i, time.time(), frames[i]) for i in range(t, t + chunk)]
    records += scorer_live.push(items)
    t += chunk
  records += scorer_live.push([], final=True)
  assert [r["index"] for r in records] == list(range(len(frames)))
  unscored = scorer.spec.unscored_first(config.data.window)
  assert all("unscored" in r for r in records[:unscored])
  for term in scorer.spec.terms:
    got = np.array([r["terms"][term.name] if "terms" in r else r["raw"]
                    for r in records[unscored:]], np.float64)
    np.testing.assert_allclose(got, offline[term.name][unscored:], rtol=2e-5, atol=2e-5,
                               err_msg=term.name)


def test_every_frame_of_a_stalling_skipping_source_is_reported():
  config, state, shape = tiny_state("ffp")
  scorer = evaluate.Scorer(config, state)
  scorer_live = live.LiveScorer(scorer, threshold=0.5, batch_size=2)
  frames = _moving_frames(shape, 30)
  skipped = {9, 10, 17}

  def source():   # stalls twice, skips frames 9, 10 and 17, then ends
    for i in range(30):
      if i in skipped:
        continue
      if i in (5, 20):
        time.sleep(0.4)
      yield i, frames[i]

  decide = scorer_live.decide

  def slow_decide(*, final=False):   # scoring slower than a burst: the small buffer overflows
    time.sleep(0.05)
    return decide(final=final)

  scorer_live.decide = slow_decide
  lines = []
  result = live.run(scorer_live, source(), lambda f: f, lines.append, buffer=2, poll=0.01)
  records = [json.loads(line) for line in lines]
  indices = sorted(r["index"] for r in records)
  assert indices == list(range(30)), "every frame reported exactly once"
  by_index = {r["index"]: r for r in records}
  assert {i for i, r in by_index.items() if r.get("dropped") == "source"} == skipped
  behind = {i for i, r in by_index.items() if r.get("dropped") == "buffer"}
  assert result["dropped_source"] == 3 and result["dropped_buffer"] == len(behind) > 0
  assert result["frames"] == 30 == (result["scored"] + result["unscored"] + 3 + len(behind))
  assert all(isinstance(r["alarm"], bool) for r in records if r.get("score") is not None)
  assert result["latency_ms_p95"] >= result["latency_ms_p50"] > 0
  assert not result["interrupted"] and result["source_error"] is None


def test_ctrl_c_stops_cleanly_and_scores_what_arrived():
  config, state, shape = tiny_state("convlstm_ae")
  scorer_live = live.LiveScorer(evaluate.Scorer(config, state), threshold=0.0, batch_size=4)
  frames = _moving_frames(shape, 10)
  calls = threading.Event()

  def source():
    for i in range(10):
      yield i, frames[i]
    calls.set()
    time.sleep(30)   # a camera that goes on: only Ctrl-C ends it

  decide = scorer_live.decide

  def interrupted_decide(*, final=False):   # Ctrl-C while scoring, once the camera is idle
    if calls.is_set() and not final:
      raise KeyboardInterrupt
    return decide(final=final)

  scorer_live.decide = interrupted_decide
  lines = []
  start = time.monotonic()
  result = live.run(scorer_live, source(), lambda f: f, lines.append, poll=0.01)
  assert time.monotonic() - start < 10 and result["interrupted"]
  records = [json.loads(line) for line in lines]
  assert sorted(r["index"] for r in records) == list(range(10))
  assert result["scored"] == 10   # the leftover frames are scored by a window ending at the last


@pytest.fixture(scope="module")
def run_and_video(tmp_path_factory):
  """A 1-step tiny ConvLSTM AE run and a 20-frame, 20 fps video of its benchmark."""
  tmp = tmp_path_factory.mktemp("live")
  synth.write_benchmark(tmp / "data", scene="pickplace", preset="tiny", progress=False)
  config, overrides = TINY["convlstm_ae"]
  assert cli.main([str(a) for a in ["train", "--config", config, "--workdir", tmp / "run",
                                    f"data.root={tmp / 'data'}", *STEPS, *overrides,
                                    "train.steps=1"]]) == 0
  frames = _moving_frames((48, 48, 3), 20)
  video.write_video(tmp / "clip.avi", frames, fps=20.0)
  return tmp


def _stream(tmp, *flags):
  start = time.monotonic()
  out = subprocess.run([sys.executable, "-m", "jaxvad.cli", "score", "--workdir", tmp / "run",
                        "--stream", tmp / "clip.avi", "--threshold", "0", *flags],
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  return [json.loads(line) for line in out.stdout.splitlines()], out.stderr, start


def test_cli_replays_a_file_at_its_frame_rate(run_and_video):
  records, err, _ = _stream(run_and_video, "--pace")
  assert [r["index"] for r in records] == list(range(20))
  assert all(isinstance(r["raw"], float) and r["alarm"] in (True, False) for r in records)
  arrivals = [r["timestamp"] for r in records]
  assert arrivals[-1] - arrivals[0] >= 19 / 20 * 0.9   # delivered at 20 fps, not at once
  assert "stream ended: 20 frames (20 scored" in err and "latency p50" in err


def test_cli_follow_waits_for_more_frames_then_ends(run_and_video):
  records, err, start = _stream(run_and_video, "--follow", "--idle-timeout", "1")
  assert [r["index"] for r in records] == list(range(20))
  assert time.monotonic() - start >= 1   # waited idle-timeout seconds at the end of the file
  assert "0 dropped behind, 0 skipped by the source" in err


def test_cli_bad_stream_arguments_are_one_line(run_and_video, capsys):
  tmp = run_and_video
  for argv, says in [
      (["score", "--workdir", tmp / "run"], "or --stream SOURCE"),
      (["score", "--workdir", tmp / "run", tmp / "clip.avi", "--stream", "0"], "not both"),
      (["score", "--workdir", tmp / "run", "--stream", tmp / "missing.avi"], "cannot open"),
      (["score", "--workdir", tmp / "run", "--stream", tmp / "clip.avi", "--buffer", "0"],
       "--buffer"),
      (["score", "--workdir", tmp / "run", "--stream", tmp / "clip.avi", "--out",
        tmp / "run" / "config.json"], "--out")]:
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err, (argv, err)
