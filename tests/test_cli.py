"""The `jaxvad` command line: help texts, error exits, and synth → demo → eval → score on tiny data."""

import csv
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from jaxvad import cli
from jaxvad import train
from jaxvad.data import datasets
from jaxvad.data import video

COMMANDS = ("synth", "train", "score", "export", "eval", "demo", "reproduce")

# A demo small enough for a test: 16×16 frames of the tiny benchmark, 4 steps.
# The ConvLSTM autoencoder at 16x16: the fastest run that exercises the CLI end to end. The
# "--config" pair comes first: argparse takes the KEY=VALUE overrides only as one run.
TINY_OVERRIDES = [
    "--config", "convlstm_ae_demo",
    "model.features=[4,8]", "model.lstm_features=8", "train.steps=4", "train.batch_size=8",
    "train.checkpoint_every=2", "train.log_every=2", "data.window=4", "data.stride=4",
    "data.size=[16,16]",
]


def run_cli(argv, capsys):
  code = cli.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out, err


def test_top_level_help_lists_every_command(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  for command in COMMANDS:
    assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_own_help(command, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main([command, "--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  assert f"usage: jaxvad {command}" in out
  # The description, not just the usage line, is shown.
  description = cli.build_parser()._subparsers._group_actions[0].choices[command].description
  assert description and description.split()[0] in out


def test_list_configs_names_the_shipped_configs(capsys):
  code, out, _ = run_cli(["train", "--list-configs"], capsys)
  assert code == 0
  assert "demo" in out.split()


@pytest.mark.parametrize("argv, expected", [
    (["train", "--config", "no_such_config"], "no_such_config"),
    (["train", "train.no_such_key=3"], "train.no_such_key"),
    (["train", "train.steps=many"], "train.steps"),
    (["eval", "--workdir", "{tmp}/missing_run"], "missing_run"),
    (["score", "--workdir", "{tmp}/missing_run", "{tmp}/clip.mp4"], "missing_run"),
    (["score", "--workdir", "{tmp}/missing_run", "{tmp}/clip.mp4", "--smoothing", "0"],
     "--smoothing = 0"),
    (["synth", "--seed", "-1", "--out", "{tmp}/s"], "--seed = -1"),
])
def test_bad_input_exits_2_with_a_message_naming_it(argv, expected, tmp_path, capsys):
  argv = [a.format(tmp=tmp_path) for a in argv]
  code, out, err = run_cli(argv, capsys)
  assert code == 2
  assert err.startswith(f"jaxvad {argv[0]}: error:")
  assert expected in err
  assert "Traceback" not in err + out


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  """One tiny demo run shared by the end-to-end tests below."""
  root = tmp_path_factory.mktemp("cli")
  data_root = root / "synth"
  code = cli.main(["synth", "--preset", "tiny", "--out", str(data_root)])
  assert code == 0
  workdir, report = root / "run", root / "report"
  code = cli.main(["demo", "--workdir", str(workdir), "--out", str(report),
                   *TINY_OVERRIDES, f"data.root={data_root}"])
  assert code == 0
  return {"data_root": data_root, "workdir": workdir, "report": report}


def datasets_config(demo_run):
  config, _ = train.load_trained(demo_run["workdir"])
  return config.data


def test_synth_is_cached_and_not_rendered_twice(demo_run, capsys):
  code, out, _ = run_cli(["synth", "--preset", "tiny", "--out", demo_run["data_root"]], capsys)
  assert code == 0 and "already rendered" in out


def test_demo_writes_a_complete_report(demo_run):
  report = demo_run["report"]
  metrics = json.loads((report / "metrics.json").read_text())
  for split in ("all", "no_distractors", "with_distractors"):
    assert 0.0 <= metrics["metrics"][split]["auroc"] <= 1.0
  assert metrics["timings"]["train_s"] >= 0
  assert (report / "overview.png").stat().st_size > 0

  test_clips = datasets.load_split(datasets_config(demo_run), "test")
  with open(report / "scores.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == sum(len(c.frames) for c in test_clips)
  assert {r["clip"] for r in rows} == {c.name for c in test_clips}
  # Each frame's anomaly type, as the benchmark labels it ("" on normal frames).
  want_types = [t for c in test_clips for t in c.frame_types]
  assert [r["anomaly_type"] for r in rows] == want_types
  assert {t for t in want_types if t} and all(bool(t) == (r["label"] == "1")
                                              for t, r in zip(want_types, rows))
  assert len(list((report / "plots").glob("*.png"))) == len(test_clips)
  for name in ("roc.png", "worst_frames.png", "report.html", "per_video.csv"):
    assert (report / name).stat().st_size > 0, name
  assert metrics["protocol"]["name"] == "jaxvad"
  threshold = metrics["threshold"]
  assert threshold["method"] == "mean_k_std" and threshold["stats"]["val_clips"] > 0
  # The threshold's counts add up to the test frames, in every group.
  for group in metrics["metrics"].values():
    c = group["confusion"]
    assert c["TP"] + c["FN"] + c["FP"] + c["TN"] == group["frames"]


def test_demo_rerun_reuses_the_finished_run(demo_run, capsys):
  code, out, _ = run_cli(["demo", "--workdir", demo_run["workdir"], "--out",
                          demo_run["report"] / "again", *TINY_OVERRIDES,
                          f"data.root={demo_run['data_root']}"], capsys)
  assert code == 0
  first = json.loads((demo_run["report"] / "metrics.json").read_text())["metrics"]
  again = json.loads((demo_run["report"] / "again" / "metrics.json").read_text())["metrics"]
  assert again == first


def test_eval_reproduces_the_demo_metrics(demo_run, tmp_path, capsys):
  code, out, _ = run_cli(["eval", "--workdir", demo_run["workdir"], "--report", tmp_path], capsys)
  assert code == 0 and "auroc" in out.lower()
  evaluated = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
  demo = json.loads((demo_run["report"] / "metrics.json").read_text())["metrics"]
  assert evaluated == demo


def test_score_writes_one_row_per_frame_of_a_frame_folder(demo_run, tmp_path, capsys):
  clip = datasets.load_split(datasets_config(demo_run), "test")[0]
  folder = next(demo_run["data_root"].glob(f"pickplace/test/{clip.name}"))
  out = tmp_path / "scores.csv"
  code, stdout, _ = run_cli(["score", "--workdir", demo_run["workdir"], folder, "--out", out],
                            capsys)
  assert code == 0 and str(out) in stdout
  with open(out) as f:
    rows = list(csv.DictReader(f))
  assert [int(r["frame"]) for r in rows] == list(range(len(clip.frames)))
  psnr = np.array([float(r["psnr"]) for r in rows])
  assert np.all(np.isfinite(psnr))
  # Without smoothing the score is exactly -PSNR (to the CSV's 4 decimals).
  np.testing.assert_allclose([float(r["score"]) for r in rows], -psnr, atol=1e-4)

  # The same frames through `jaxvad eval` get the same PSNR.
  with open(demo_run["report"] / "scores.csv") as f:
    eval_rows = [r for r in csv.DictReader(f) if r["clip"] == clip.name]
  np.testing.assert_allclose([float(r["psnr"]) for r in eval_rows], psnr, atol=2e-3)


def test_score_refuses_a_clip_shorter_than_the_window(demo_run, tmp_path, capsys):
  clip = datasets.load_split(datasets_config(demo_run), "test")[0]
  short = tmp_path / "short"
  video.write_frames(short, clip.frames[:2])
  code, _, err = run_cli(["score", "--workdir", demo_run["workdir"], short], capsys)
  assert code == 2 and "short" in err and "at least" in err


def _browser() -> str | None:
  return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
               if shutil.which(b)), None)


def test_report_html_renders_every_image_in_headless_chromium(demo_run, tmp_path):
  browser = _browser()
  if browser is None:
    pytest.skip("no headless Chromium on PATH: `apt-get install chromium` (.ci/run does)")
  page = (demo_run["report"] / "report.html").read_text()
  expected = page.count("<img ")
  assert expected >= 3  # score curves, ROC curves, worst frames
  # The page is copied with a probe that, once everything loaded, records how many images
  # decoded to a non-empty bitmap; --dump-dom prints the DOM after the load event.
  probe = ("<script>window.addEventListener('load', () => {const im = [...document.images];"
           "document.body.dataset.images = im.length; document.body.dataset.rendered = "
           "im.filter(i => i.complete && i.naturalWidth > 0).length;});</script></body>")
  probed = tmp_path / "report.html"
  probed.write_text(page.replace("</body>", probe))
  dom = subprocess.run(
      [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
       "--no-first-run", "--disable-background-networking", "--disable-component-update",
       "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
       probed.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
  body = re.search(r"<body[^>]*>", dom).group(0)
  assert f'data-images="{expected}"' in body, body
  assert f'data-rendered="{expected}"' in body, body


def test_train_and_eval_on_a_public_layout(tmp_path, capsys):
  from tests.test_public_datasets import flags, write_images, write_mask_images
  root = tmp_path / "UCSDped2"
  write_images(root / "Train" / "Train001", 12, ".tif", first=1)
  write_images(root / "Test" / "Test001", 9, ".tif", first=1)
  write_mask_images(root / "Test" / "Test001_gt", flags(9, [6, 7, 8]))
  overrides = [o for o in TINY_OVERRIDES if not o.startswith("train.steps")]
  overrides += ["train.steps=2", "data.dataset=ucsd", f"data.root={root}"]
  workdir = tmp_path / "run"
  code, _, err = run_cli(["train", "--workdir", workdir, *overrides], capsys)
  assert code == 0, err
  code, out, err = run_cli(["eval", "--workdir", workdir, "--report", tmp_path / "rep"], capsys)
  assert code == 0, err
  assert "no validation split" in out  # UCSD has none: no threshold, said so
  metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
  assert metrics["threshold"] is None
  assert metrics["metrics"]["all"]["frames"] == 9
  assert metrics["metrics"]["all"]["anomalous_frames"] == 3
  # Which labels the numbers are computed against is recorded (issue 14).
  assert metrics["labels"] == {"files": [str(root / "Test" / "Test001_gt")]}


def test_eval_under_another_protocol_and_threshold(demo_run, tmp_path, capsys):
  code, out, err = run_cli(["eval", "--workdir", demo_run["workdir"], "--report", tmp_path,
                            "score.protocol=ano_pred", "score.threshold=target_false_alarm_rate",
                            "score.threshold_param=0.1"], capsys)
  assert code == 0, err
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["protocol"]["name"] == "ano_pred" and metrics["protocol"]["drop_first"] == 4
  assert metrics["threshold"]["method"] == "target_false_alarm_rate"
  assert metrics["threshold"]["stats"]["flag_rate"] <= 0.1
  assert metrics["config"]["score"]["protocol"] == "ano_pred"
  # Dropped frames are left out of the metrics (4 per clip) but kept, blank, in scores.csv.
  demo = json.loads((demo_run["report"] / "metrics.json").read_text())["metrics"]["all"]
  assert metrics["metrics"]["all"]["frames"] == demo["frames"] - 4 * demo["clips"]
  code, _, err = run_cli(["eval", "--workdir", demo_run["workdir"], "train.steps=3"], capsys)
  assert code == 2 and "only score.*" in err
