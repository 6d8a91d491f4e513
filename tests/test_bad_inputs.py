"""Bad input through the command line, as a new user gives it: every case ends in one line.

Each case of the table runs `jaxvad ...` in-process and asserts the exit code, that stderr holds
one `jaxvad COMMAND: error:` line naming the file or key (plus, at most, progress bars and
`warning:` lines), that there is no traceback anywhere (stdout, stderr, or from a thread at
file-descriptor level), and that every file that existed before (the shared tiny run, the
benchmark, the case's own inputs) is byte-identical afterwards, with no temporary left behind.

Read-only folders and a full disk need `mount` (we run as root, where permission bits do not
stop writes): a read-only bind mount and a small tmpfs. Where mounting is not allowed those
cases are skipped with the reason.

At the end, hypothesis fuzzes the label-file parsers and the video reader with random bytes:
nothing but a `JaxvadError` may come out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
from typing import Callable

import cv2
import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxvad import cli, fsio
from jaxvad.data import public, video
from jaxvad.errors import JaxvadError
from tests import layouts
from tests.test_cli import TINY_OVERRIDES
from tests.test_public_datasets import (cell, flags, gray_frames, mask_stack, write_images,
                                        write_mask_images)

# --------------------------------------------------------------------------- helpers


def _progress(segment: str) -> bool:
  return bool(re.search(r"\d+%\|", segment))


def run_cli(argv, capfd):
  """(exit code, stdout, stderr lines that are not progress bars) of one in-process command.

  capfd, not capsys: OpenCV, FFmpeg, TensorStore and orbax's threads write to the file
  descriptors directly, and those lines must not appear either.
  """
  code = cli.main([str(a) for a in argv])
  out, err = capfd.readouterr()
  lines = [seg for line in err.split("\n") for seg in line.split("\r")
           if seg.strip() and not _progress(seg)]
  return code, out, lines


def snapshot(*roots: pathlib.Path) -> dict[pathlib.Path, str]:
  """sha256 of every file under `roots` (symlinks as their target's name)."""
  digests = {}
  for root in roots:
    for p in sorted(pathlib.Path(root).rglob("*")):
      if p.is_symlink():
        digests[p] = "link:" + os.readlink(p)
      elif p.is_file():
        digests[p] = hashlib.sha256(p.read_bytes()).hexdigest()
  return digests


def assert_untouched(before: dict, *roots: pathlib.Path) -> None:
  """Every file of `before` is still there, byte for byte; no temporary is left in `roots`."""
  after = snapshot(*roots)
  changed = [str(p) for p, digest in before.items() if after.get(p) != digest]
  assert not changed, f"input files changed or removed: {changed}"
  leftovers = [str(p) for p in after if fsio.TEMP_MARK in p.name or ".tmp" in p.name
               or "orbax-checkpoint-tmp" in str(p)]
  assert not leftovers, f"temporaries left behind: {leftovers}"


def assert_one_line_error(code, out, lines, command: str, expected: list[str]) -> None:
  errors = [line for line in lines if line.startswith(f"jaxvad {command}: error: ")]
  others = [line for line in lines
            if not line.startswith(f"jaxvad {command}: ") and line not in errors]
  assert code == 2, (code, lines)
  assert len(errors) == 1, lines
  assert not others, f"stderr holds more than the error line: {others}"
  assert "Traceback" not in out + "\n".join(lines)
  for text in expected:
    assert text in errors[0], (text, errors[0])


def _mount(args: list[str]) -> None:
  result = subprocess.run(["mount", *args], capture_output=True, text=True)
  if result.returncode:
    pytest.skip(f"`mount {' '.join(args)}` is not allowed here ({result.stderr.strip()}): "
                f"read-only and full-disk cases need root with CAP_SYS_ADMIN")


@contextlib.contextmanager
def read_only(folder: pathlib.Path):
  """`folder` read-only for the block (a read-only bind mount of itself), even for root."""
  _mount(["--bind", str(folder), str(folder)])
  try:
    result = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)],
                            capture_output=True, text=True)
    if result.returncode:
      pytest.skip(f"cannot remount {folder} read-only: {result.stderr.strip()}")
    yield folder
  finally:
    subprocess.run(["umount", str(folder)], check=False)


@contextlib.contextmanager
def small_disk(folder: pathlib.Path, size: str):
  """A tmpfs of `size` mounted on `folder` for the block: a disk that fills up."""
  folder.mkdir(parents=True, exist_ok=True)
  _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)])
  try:
    yield folder
  finally:
    subprocess.run(["umount", str(folder)], check=False)


# --------------------------------------------------------------------------- the shared run


@dataclasses.dataclass
class World:
  root: pathlib.Path
  synth: pathlib.Path     # the tiny benchmark (data.root)
  run: pathlib.Path       # a tiny trained run: checkpoints at steps 2 and 4
  clip: pathlib.Path      # a good video
  frames: pathlib.Path    # a good frame folder (a test clip of the benchmark)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
  root = tmp_path_factory.mktemp("bad_inputs")
  synth = root / "synth"
  assert cli.main(["synth", "--preset", "tiny", "--out", str(synth)]) == 0
  run = root / "run"
  assert cli.main(["train", "--workdir", str(run), *TINY_OVERRIDES, f"data.root={synth}"]) == 0
  frames = sorted(p for p in (synth / "pickplace" / "test").iterdir() if p.is_dir())[0]
  clip = root / "clip.mp4"
  video.write_video(clip, video.read_frames(frames)[:12])
  return World(root, synth, run, clip, frames)


def copy_run(world: World, tmp: pathlib.Path, **data) -> pathlib.Path:
  """A copy of the shared run, its config's `data` section updated (to score other data)."""
  run = tmp / "run"
  shutil.copytree(world.run, run)
  config = json.loads((run / "config.json").read_text())
  config["data"].update(data)
  (run / "config.json").write_text(json.dumps(config))
  return run


def train_args(world: World, *extra) -> list:
  return [*TINY_OVERRIDES, f"data.root={world.synth}", *extra]


# --------------------------------------------------------------------------- bad datasets


def _ucsd(tmp: pathlib.Path) -> pathlib.Path:
  root = tmp / "UCSDped2"
  write_images(root / "Train" / "Train001", 8, ".tif", first=1)
  write_images(root / "Test" / "Test001", 6, ".tif", first=1)
  write_images(root / "Test" / "Test002", 5, ".tif", first=1)
  return root


def _frames_layout(tmp: pathlib.Path) -> pathlib.Path:
  root = tmp / "ped2"
  write_images(root / "training" / "frames" / "01", 8, ".jpg")
  write_images(root / "testing" / "frames" / "01", 6, ".jpg")
  write_images(root / "testing" / "frames" / "02", 5, ".jpg")
  return root


def _events(tmp: pathlib.Path, labels_json) -> pathlib.Path:
  root = tmp / "factory"
  write_images(root / "train" / "ev_a", 8, ".png")
  write_images(root / "test" / "ev_b", 6, ".png")
  if labels_json is not None:
    (root / "test" / "ev_b" / "labels.json").write_text(labels_json)
  return root


def ucsd_mat_and_npy_disagree(tmp):
  root = _ucsd(tmp)
  scipy.io.savemat(root / "ped2.mat", {"gt": cell([np.array([[2.0], [4.0]]),
                                                   np.zeros((0, 0))])})
  np.save(root / "frame_labels_ped2.npy", np.zeros(11))
  return "ucsd", root


def ucsd_m_range_outside(tmp):
  root = _ucsd(tmp)
  (root / "Test" / "UCSDped2.m").write_text("TestVideoFile{end+1}.gt_frame = [2:9];\n"
                                             "TestVideoFile{end+1}.gt_frame = [1:2];\n")
  return "ucsd", root


def ucsd_mask_count_mismatch(tmp):
  root = _ucsd(tmp)
  write_mask_images(root / "Test" / "Test001_gt", flags(4, [1]))
  write_mask_images(root / "Test" / "Test002_gt", flags(5, [1]))
  return "ucsd", root


def frames_mat_range_outside(tmp):
  root = _frames_layout(tmp)
  scipy.io.savemat(root / "ped2.mat", {"gt": cell([np.array([[5.0], [7.0]]),
                                                   np.zeros((0, 0))])})
  return "frames", root


def frames_npy_total_mismatch(tmp):
  root = _frames_layout(tmp)
  np.save(root / "frame_labels_ped2.npy", np.zeros((1, 12)))
  return "frames", root


def frames_two_mat_files(tmp):
  root = _frames_layout(tmp)
  for name in ("gt_a.mat", "gt_b.mat"):
    scipy.io.savemat(root / name, {"gt": cell([np.zeros((0, 0))] * 2)})
  return "frames", root


def frames_mat_truncated(tmp):
  root = _frames_layout(tmp)
  scipy.io.savemat(root / "ped2.mat", {"gt": cell([np.zeros((0, 0))] * 2)})
  data = (root / "ped2.mat").read_bytes()
  (root / "ped2.mat").write_bytes(data[:len(data) // 2])
  return "frames", root


def avenue_vollabel_count_mismatch(tmp):
  root = tmp / "avenue"
  video.write_video(root / "training_videos" / "01.avi", gray_frames(6), fps=25)
  video.write_video(root / "testing_videos" / "01.avi", gray_frames(6), fps=25)
  vol = np.empty((1, 4), dtype=object)
  for j, mask in enumerate(mask_stack(flags(4, [1]))):
    vol[0, j] = mask.astype(np.float64)
  (root / "testing_label_mask").mkdir()
  scipy.io.savemat(root / "testing_label_mask" / "1_label.mat", {"volLabel": vol})
  return "avenue", root


def shanghaitech_npy_length_mismatch(tmp):
  root = tmp / "shanghaitech"
  video.write_video(root / "training" / "videos" / "01_001.avi", gray_frames(6), fps=25)
  write_images(root / "testing" / "frames" / "01_0014", 6, ".jpg")
  (root / "testing" / "test_frame_mask").mkdir(parents=True)
  np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.zeros(9, np.int64))
  return "shanghaitech", root


def intervals_range_outside(tmp):
  return "intervals", _events(tmp, json.dumps({"anomalous_frames": [[3, 12]]}))


def intervals_unknown_key(tmp):
  return "intervals", _events(tmp, json.dumps({"anomalous": [[1, 2]]}))


def intervals_not_json(tmp):
  return "intervals", _events(tmp, "{anomalous_frames: [[1, 2]]")


def intervals_missing_json(tmp):
  return "intervals", _events(tmp, None)


def two_layouts(tmp):
  root = _ucsd(tmp)
  write_images(root / "testing" / "frames" / "01", 6, ".jpg")
  return "auto", root


def mvtec_mask_missing(tmp):
  root = layouts.write_mvtec(tmp / "bottle")
  (root / "ground_truth" / "crack" / "001_mask.png").unlink()
  return "mvtec", root


LABEL_CASES = [
    # (dataset builder, texts the error line must hold)
    (ucsd_mat_and_npy_disagree, ["ped2.mat", "frame_labels_ped2.npy", "disagree", "Test001",
                                 "labels_file="]),
    (ucsd_m_range_outside, ["UCSDped2.m", "[2, 9]", "outside the video's 6 frames"]),
    (ucsd_mask_count_mismatch, ["Test001_gt", "4 mask images", "6 frames"]),
    (frames_mat_range_outside, ["ped2.mat", "video 01", "outside the video's 6 frames"]),
    (frames_npy_total_mismatch, ["frame_labels_ped2.npy", "12 frame labels", "11 frames"]),
    (frames_two_mat_files, ["several label files", "gt_a.mat", "gt_b.mat"]),
    (frames_mat_truncated, ["ped2.mat", "MATLAB"]),
    (avenue_vollabel_count_mismatch, ["1_label.mat", "4 volLabel masks", "6 frames"]),
    (shanghaitech_npy_length_mismatch, ["01_0014.npy", "9 frame labels", "6 frames"]),
    (intervals_range_outside, ["labels.json", "[3, 12]", "6 frames"]),
    (intervals_unknown_key, ["labels.json", "unknown key", "anomalous"]),
    (intervals_not_json, ["labels.json", "JSON"]),
    (intervals_missing_json, ["labels.json is missing"]),
    (two_layouts, ["several dataset layouts"]),
    (mvtec_mask_missing, ["001_mask.png"]),
]


@pytest.mark.parametrize("build, expected", LABEL_CASES, ids=[c[0].__name__ for c in LABEL_CASES])
def test_bad_label_files_are_one_line_errors(build, expected, world, tmp_path, capfd):
  """Label files of every layout: out of range, miscounted, ambiguous, unreadable."""
  layout, root = build(tmp_path / "data")
  run = copy_run(world, tmp_path, dataset=layout, root=str(root))
  before = snapshot(world.root, tmp_path)
  code, out, lines = run_cli(["eval", "--workdir", run, "--report", tmp_path / "report"], capfd)
  assert_one_line_error(code, out, lines, "eval", expected)
  assert_untouched(before, world.root, tmp_path)
  assert not (tmp_path / "report" / "metrics.json").exists()


# --------------------------------------------------------------------------- the CLI table


@dataclasses.dataclass
class Case:
  """One bad command: `setup(world, tmp)` writes the bad input and returns the arguments."""
  id: str
  setup: Callable[[World, pathlib.Path], list]
  expected: list[str]          # texts the error line must hold ({tmp} is replaced)
  mount: str | None = None     # "ro": tmp/ro is made read-only once set up


def _write(path: pathlib.Path, data: bytes) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)
  return path


def _png(frame) -> bytes:
  return cv2.imencode(".png", frame)[1].tobytes()


def _folder(tmp: pathlib.Path, sizes) -> pathlib.Path:
  folder = tmp / "frames"
  for i, (h, w) in enumerate(sizes):
    _write(folder / f"{i:03d}.png", _png(np.full((h, w, 3), 40 * i % 255, np.uint8)))
  return folder


def _score(w: World, source, *extra, out=None, tmp=None) -> list:
  return ["score", "--workdir", w.run, source, "--out", out or tmp / "scores.csv", *extra]


def _truncated_mp4(w, t):
  data = w.clip.read_bytes()
  return _score(w, _write(t / "cut.mp4", data[:len(data) // 2]), tmp=t)


def _empty_folder(w, t):
  (t / "frames").mkdir()
  return _score(w, t / "frames", tmp=t)


def _corrupt_frame(w, t):
  folder = _folder(t, [(16, 16)] * 6)
  _write(folder / "003.png", os.urandom(300))
  return _score(w, folder, tmp=t)


def _zero_byte_frame(w, t):
  folder = _folder(t, [(16, 16)] * 6)
  _write(folder / "002.png", b"")
  return _score(w, folder, tmp=t)


def _symlink_out(w, t):
  clip = _write(t / "victim.mp4", w.clip.read_bytes())
  (t / "link.csv").symlink_to(clip)
  return _score(w, clip, out=t / "link.csv")


def _hardlink_out(w, t):
  clip = _write(t / "victim.mp4", w.clip.read_bytes())
  os.link(clip, t / "alias.csv")
  return _score(w, clip, out=t / "alias.csv")


def _victim(w, t):
  return _write(t / "victim.mp4", w.clip.read_bytes())


def _corrupt_run(w, t, edit):
  run = t / "run"
  shutil.copytree(w.run, run)
  edit(run)
  return ["score", "--workdir", run, w.clip, "--out", t / "scores.csv"]


def _empty_checkpoint_files(run):
  for f in (run / "checkpoints" / "4").rglob("*"):
    if f.is_file() and f.parent.name == "d":
      f.write_bytes(b"")


def _resume_ro(w, t):
  shutil.copytree(w.run, t / "ro" / "run")
  return ["train", "--workdir", t / "ro" / "run", "--resume", *train_args(w, "train.steps=6")]


def _config_file(t, text: bytes):
  return ["train", "--config", _write(t / "exp.toml", text), "--workdir", t / "new"]


CASES = [
    # Videos and frame folders that cannot be scored.
    Case("video_random_bytes", lambda w, t: _score(w, _write(t / "c.mp4", os.urandom(3000)), tmp=t),
         ["c.mp4", "corrupt"]),
    Case("video_zero_bytes", lambda w, t: _score(w, _write(t / "c.avi", b""), tmp=t),
         ["c.avi"]),
    Case("video_truncated_mp4", _truncated_mp4, ["cut.mp4", "truncated"]),
    Case("text_named_video", lambda w, t: _score(w, _write(t / "c.mov", b"hello\n" * 50), tmp=t),
         ["c.mov"]),
    Case("image_named_video", lambda w, t: _score(
        w, _write(t / "c.mkv", _png(np.zeros((16, 16, 3), np.uint8))), tmp=t),
         ["c.mkv", "1 frames", "windows of 4 frames"]),
    Case("unsupported_suffix", lambda w, t: _score(w, _write(t / "c.txt", b"x"), tmp=t),
         ["c.txt", "unsupported file type"]),
    Case("single_image", lambda w, t: _score(
        w, _write(t / "f.png", _png(np.zeros((8, 8, 3), np.uint8))), tmp=t), ["f.png", "folder"]),
    Case("missing_input", lambda w, t: _score(w, t / "nothing.mp4", tmp=t), ["nothing.mp4"]),
    Case("empty_frame_folder", _empty_folder, ["frames", "no frame files"]),
    Case("mixed_frame_sizes", lambda w, t: _score(
        w, _folder(t, [(16, 16)] * 3 + [(20, 16)] + [(16, 16)] * 2), tmp=t),
         ["003.png", "20x16", "000.png", "one size"]),
    Case("corrupt_frame", _corrupt_frame, ["003.png", "cannot decode"]),
    Case("zero_byte_frame", _zero_byte_frame, ["002.png", "cannot decode"]),
    Case("too_few_frames", lambda w, t: _score(w, _folder(t, [(16, 16)] * 2), tmp=t),
         ["2 frames", "windows of 4 frames"]),
    Case("roi_outside", lambda w, t: _score(w, w.clip, "--roi", 0, 0, 500, 500, tmp=t),
         ["roi", "does not fit"]),
    Case("roi_negative", lambda w, t: _score(w, w.clip, "--roi", -1, 0, 4, 4, tmp=t), ["--roi"]),
    # Issue 14 case 6: --smoothing 0 was silently the run's value, -3 a ValueError.
    Case("smoothing_zero", lambda w, t: _score(w, w.clip, "--smoothing", 0, tmp=t),
         ["--smoothing = 0", ">= 1"]),
    Case("smoothing_negative", lambda w, t: _score(w, w.clip, "--smoothing", -3, tmp=t),
         ["--smoothing = -3", ">= 1"]),
    # Issue 14 case 1: outputs that are (or are inside) inputs are refused before any work.
    Case("out_is_the_input_video", lambda w, t: _score(w, _victim(w, t), out=t / "victim.mp4"),
         ["--out", "victim.mp4", "is the input video"]),
    Case("out_is_the_frame_folder", lambda w, t: _score(w, w.frames, out=w.frames),
         ["--out", "is the input video or frame folder"]),
    Case("out_inside_the_frame_folder", lambda w, t: _score(w, w.frames, out=w.frames / "s.csv"),
         ["lies inside the input video or frame folder"]),
    Case("out_is_the_run_config", lambda w, t: _score(w, w.clip, out=w.run / "config.json"),
         ["is the run file (config.json)"]),
    Case("out_inside_checkpoints", lambda w, t: _score(w, w.clip, out=w.run / "checkpoints" / "x"),
         ["lies inside the run file (checkpoints)"]),
    Case("out_symlink_to_input", _symlink_out, ["link.csv", "is the input video"]),
    Case("out_hard_link_of_input", _hardlink_out, ["alias.csv", "is the input video"]),
    # Issue 14 case 2: file-system faults.
    Case("out_folder_missing", lambda w, t: _score(w, w.clip, out=t / "no" / "such" / "s.csv"),
         ["{tmp}/no/such", "does not exist"]),
    Case("out_is_a_folder", lambda w, t: _score(w, w.clip, out=t), ["is a folder"]),
    Case("out_read_only_folder", lambda w, t: _score(w, w.clip, out=t / "ro" / "s.csv"),
         ["{tmp}/ro", "read-only"], mount="ro"),
    Case("report_read_only_folder", lambda w, t: [
        "eval", "--workdir", w.run, "--report", t / "ro" / "report"], ["{tmp}/ro", "read-only"],
         mount="ro"),
    Case("workdir_read_only_folder", lambda w, t: [
        "train", "--workdir", t / "ro" / "run", *train_args(w)], ["{tmp}/ro/run", "read-only"],
         mount="ro"),
    Case("resume_in_read_only_run", _resume_ro, ["{tmp}/ro/run", "read-only"], mount="ro"),
    Case("report_is_the_dataset", lambda w, t: [
        "eval", "--workdir", w.run, "--report", w.synth / "pickplace"],
         ["--report", "dataset folder"]),
    Case("report_in_checkpoints", lambda w, t: [
        "eval", "--workdir", w.run, "--report", w.run / "checkpoints"], ["checkpoints"]),
    Case("workdir_is_the_dataset", lambda w, t: [
        "train", "--workdir", w.synth / "pickplace", *train_args(w)], ["dataset folder"]),
    # Issue 14 case 3: a resume that would go back in steps rewrote config.json.
    Case("resume_to_fewer_steps", lambda w, t: [
        "train", "--workdir", w.run, "--resume", *train_args(w, "train.steps=2")],
         ["train.steps = 2", "already at step 4"]),
    Case("resume_without_flag", lambda w, t: ["train", "--workdir", w.run, *train_args(w)],
         ["already holds checkpoints", "--resume"]),
    Case("resume_with_another_trajectory", lambda w, t: [
        "train", "--workdir", w.run, "--resume", *train_args(w, "train.learning_rate=0.5")],
         ["train.learning_rate", "another --workdir"]),
    # Config errors.
    Case("config_missing", lambda w, t: ["train", "--config", t / "nope.toml"], ["nope.toml"]),
    Case("config_not_toml", lambda w, t: _config_file(t, b"[train\nsteps = "),
         ["exp.toml", "TOML"]),
    Case("config_binary", lambda w, t: _config_file(t, os.urandom(200) + b"\xff\xfe"),
         ["exp.toml"]),
    Case("config_unknown_key", lambda w, t: ["train", *train_args(w, "train.stepz=3")],
         ["train.stepz"]),
    Case("config_bad_value", lambda w, t: ["train", *train_args(w, "train.steps=0")],
         ["train.steps"]),
    Case("config_bad_size", lambda w, t: ["train", *train_args(w, "data.size=[0,16]")],
         ["data.size"]),
    Case("config_roi_outside", lambda w, t: ["train", *train_args(w, "data.roi=[0,0,500,8]")],
         ["data.roi", "500"]),
    Case("synth_bad_size", lambda w, t: ["synth", "--out", t / "s", "--size", 0, 16],
         ["size must be", "(0, 16)"]),
    Case("eval_non_score_override", lambda w, t: ["eval", "--workdir", w.run, "model.x=1"],
         ["only score.*"]),
    Case("eval_unknown_split", lambda w, t: [
        "eval", "--workdir", w.run, "--split", "nope", "--report", t / "r"], ["nope"]),
    Case("mask_from_a_detector", lambda w, t: _score(w, w.clip, "--mask-from", w.run, tmp=t),
         ["--mask-from", "makes no background masks"]),
    # Issue 14 case 5: corrupt run folders.
    Case("not_a_run_folder", lambda w, t: ["score", "--workdir", t, w.clip, "--out", t / "s.csv"],
         ["config.json is missing"]),
    Case("run_config_empty", lambda w, t: _corrupt_run(
        w, t, lambda r: (r / "config.json").write_text("")), ["config.json", "empty"]),
    Case("run_config_not_json", lambda w, t: _corrupt_run(
        w, t, lambda r: (r / "config.json").write_text('{"name": "x",')),
         ["config.json", "not valid JSON"]),
    Case("run_config_bad_key", lambda w, t: _corrupt_run(
        w, t, lambda r: (r / "config.json").write_text(json.dumps(
            {**json.loads((r / "config.json").read_text()), "color": 1}))), ["color"]),
    Case("run_json_corrupt", lambda w, t: _corrupt_run(
        w, t, lambda r: (r / "run.json").write_text('{"frame_shape": "big"}')),
         ["run.json", "frame_shape"]),
    Case("checkpoints_missing", lambda w, t: _corrupt_run(
        w, t, lambda r: shutil.rmtree(r / "checkpoints")), ["holds no checkpoint"]),
    Case("checkpoint_files_emptied", lambda w, t: _corrupt_run(w, t, _empty_checkpoint_files),
         ["checkpoint of step 4", "damaged", "{tmp}/run/checkpoints/4", "fall back to step 2"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_loses_nothing(case: Case, world, tmp_path, capfd):
  argv = case.setup(world, tmp_path)
  command = str(argv[0])
  with contextlib.ExitStack() as stack:
    if case.mount == "ro":
      (tmp_path / "ro").mkdir(exist_ok=True)
      stack.enter_context(read_only(tmp_path / "ro"))
    before = snapshot(world.root, tmp_path)
    code, out, lines = run_cli(argv, capfd)
    assert_one_line_error(code, out, lines, command,
                          [e.format(tmp=tmp_path) for e in case.expected])
    assert_untouched(before, world.root, tmp_path)
  # Nothing was written where the command was told to write.
  for flag in ("--out", "--report"):
    if flag in argv:
      target = pathlib.Path(argv[argv.index(flag) + 1])
      if target not in before and not target.is_dir():
        assert not target.exists(), target


# --------------------------------------------------------------------------- beyond the table


def test_resume_at_the_last_step_says_so_and_rewrites_nothing(world, capfd):
  """Issue 14 case 3: a resume with nothing to do says so and leaves config.json alone."""
  before = snapshot(world.run)
  code, out, lines = run_cli(["train", "--workdir", world.run, "--resume", *train_args(world)],
                             capfd)
  assert code == 0, lines
  assert "already trained to step 4" in out and "nothing to do" in out
  assert_untouched(before, world.run)


def test_a_read_only_run_still_scores(world, tmp_path, capfd):
  """Reading a run writes nothing into it, so a run on a read-only disk scores."""
  shutil.copytree(world.run, tmp_path / "ro" / "run")
  with read_only(tmp_path / "ro"):
    code, out, lines = run_cli(["score", "--workdir", tmp_path / "ro" / "run", world.clip,
                                "--out", tmp_path / "s.csv"], capfd)
  assert code == 0, lines
  assert len((tmp_path / "s.csv").read_text().splitlines()) == 13


def test_full_disk_during_a_checkpoint_save(world, tmp_path, capfd):
  """Issue 14 case 2: a disk too small for a checkpoint is one line, with nothing half-written."""
  with small_disk(tmp_path / "disk", "96k"):
    code, out, lines = run_cli(["train", "--workdir", tmp_path / "disk" / "run",
                                *train_args(world)], capfd)
    assert_one_line_error(code, out, lines, "train",
                          ["checkpoint of step 2", "disk", "free", "--resume"])
    assert_untouched({}, tmp_path / "disk")


def test_full_disk_found_by_orbax_mid_save(world, tmp_path, capfd, monkeypatch):
  """The free-space check skipped: orbax's own failure (a TensorStore RESOURCE_EXHAUSTED from
  a background thread) still ends in one line, and the half-written step folder is removed."""
  from jaxvad import train
  monkeypatch.setattr(train, "_check_checkpoint_space", lambda *args: None)
  with small_disk(tmp_path / "disk", "96k"):
    code, out, lines = run_cli(["train", "--workdir", tmp_path / "disk" / "run",
                                *train_args(world)], capfd)
    assert_one_line_error(code, out, lines, "train", ["checkpoint", "disk is full", "--resume"])
    assert_untouched({}, tmp_path / "disk")


def test_eval_checks_the_report_folder_before_scoring(world, tmp_path, capfd):
  """Issue 14 case 2: eval used to score for 18 s, then fail to write its report."""
  (tmp_path / "ro").mkdir()
  with read_only(tmp_path / "ro"):
    code, out, lines = run_cli(["eval", "--workdir", world.run, "--report",
                                tmp_path / "ro" / "rep"], capfd)
  assert code == 2 and "read-only" in lines[-1]
  assert "protocol" not in out  # no clip was scored


def test_score_checks_its_input_before_loading_the_model(world, tmp_path, capfd, monkeypatch):
  """Issue 14 case 7: input errors came after ~12 s of restoring the model."""
  from jaxvad import train
  restored = []
  monkeypatch.setattr(train, "load_trained", lambda *a, **k: restored.append(a))
  for source in (tmp_path / "missing.mp4", _write(tmp_path / "bad.mp4", b"junk" * 100),
                 _folder(tmp_path, [(16, 16), (8, 8), (16, 16), (16, 16)])):
    code, _, lines = run_cli(["score", "--workdir", world.run, source, "--out",
                              tmp_path / "s.csv"], capfd)
    assert code == 2 and str(source.name) in lines[-1], lines
  assert not restored


def test_intervals_train_split_with_anomalous_frames(world, tmp_path, capfd):
  """Issue 14 case 4a: anomalous frames of a train event were trained on as normal. They are
  dropped, a warning says which, and run.json records it."""
  root = tmp_path / "factory"
  write_images(root / "train" / "ev_a", 16, ".png")
  (root / "train" / "ev_a" / "labels.json").write_text(
      json.dumps({"anomalous_frames": [[6, 8]]}))
  write_images(root / "train" / "ev_b", 8, ".png")
  write_images(root / "test" / "ev_c", 8, ".png")
  (root / "test" / "ev_c" / "labels.json").write_text('{"anomalous_frames": [[2, 4]]}')
  run = tmp_path / "run"
  overrides = [o for o in TINY_OVERRIDES if not o.startswith(("train.steps", "train.checkpoint"))]
  code, out, lines = run_cli(["train", "--workdir", run, *overrides, "data.dataset=intervals",
                              f"data.root={root}", "train.steps=1",
                              "train.checkpoint_every=1"], capfd)
  assert code == 0, lines
  warning = [line for line in lines if line.startswith("jaxvad train: warning:")]
  assert len(warning) == 1 and "ev_a" in warning[0] and "labels.json" in warning[0]
  dropped = json.loads((run / "run.json").read_text())["dropped_train_frames"]
  assert dropped["ev_a"]["anomalous"] == [[6, 8]]
  assert dropped["ev_a"]["label_source"] == str(root / "train" / "ev_a" / "labels.json")
  # Frames 0..5 and 8..15 are two normal runs; both are long enough to train on.
  assert dropped["ev_a"]["dropped_short_runs"] == []


def test_agreeing_label_files_are_recorded_in_metrics_json(world, tmp_path, capfd):
  """Issue 14 case 4b, the other half: which label file was used, and that another agrees."""
  root = _ucsd(tmp_path / "data")
  scipy.io.savemat(root / "ped2.mat", {"gt": cell([np.array([[2.0], [4.0]]),
                                                   np.zeros((0, 0))])})
  np.save(root / "frame_labels_ped2.npy", np.concatenate([flags(6, [1, 2, 3]), flags(5, [])]))
  run = copy_run(world, tmp_path, dataset="ucsd", root=str(root))
  code, _, lines = run_cli(["eval", "--workdir", run, "--report", tmp_path / "rep"], capfd)
  assert code == 0, lines
  labels = json.loads((tmp_path / "rep" / "metrics.json").read_text())["labels"]
  assert labels["files"] == [str(root / "ped2.mat")]
  assert labels["also_found_and_agreeing"] == [str(root / "frame_labels_ped2.npy")]


def test_a_truncated_avi_scores_what_decodes_with_one_warning(world, tmp_path, capfd):
  """Not an error (containers estimate counts), but said in one line."""
  frames = video.read_frames(world.frames)[:12]
  video.write_video(tmp_path / "full.avi", frames)
  data = (tmp_path / "full.avi").read_bytes()
  cut = _write(tmp_path / "cut.avi", data[:int(len(data) * 0.75)])
  code, _, lines = run_cli(["score", "--workdir", world.run, cut, "--out", tmp_path / "s.csv"],
                           capfd)
  assert code == 0, lines
  assert len(lines) == 1 and lines[0].startswith("jaxvad score: warning:")
  assert "truncated" in lines[0]


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
  """fsio.write_atomic: a write that fails midway (here: fsync) keeps the old file whole."""
  target = _write(tmp_path / "metrics.json", b"old")

  def failing_fsync(fd):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "fsync", failing_fsync)
  with pytest.raises(JaxvadError, match=r"cannot write .*metrics.json: the disk is full"):
    fsio.write_atomic(target, "new" * 1000)
  assert target.read_bytes() == b"old"
  assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_mat_file_that_crashed_scipy_is_refused(tmp_path):
  """Found by the fuzzing below: one flipped type byte (miDOUBLE 9 -> 44) inside a cell made
  scipy.io.loadmat segfault; the structure check refuses it first."""
  data = _valid_mat()
  tag = struct.pack("<II", 9, 16)  # the 2x1 double [start; end] of the first cell
  assert data.count(tag) == 1
  path = _write(tmp_path / "ped2.mat", data.replace(tag, struct.pack("<II", 44, 16)))
  with pytest.raises(JaxvadError, match=r"ped2.mat as a MATLAB .mat file: it is damaged"):
    public._read_gt_mat(path)


# --------------------------------------------------------------------------- fuzzing

_FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_mat() -> bytes:
  buf = io.BytesIO()
  scipy.io.savemat(buf, {"gt": cell([np.array([[2.0], [4.0]]), np.zeros((0, 0))])})
  return buf.getvalue()


def _valid_npy() -> bytes:
  buf = io.BytesIO()
  np.save(buf, np.zeros((1, 11), np.int64))
  return buf.getvalue()


def _mutations(valid: bytes):
  """Random bytes, and a valid file with bytes flipped and/or cut short."""
  flipped = st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)),
                     max_size=8).map(lambda edits: _apply(valid, edits))
  cut = st.integers(0, len(valid)).map(lambda n: valid[:n])
  return st.one_of(st.binary(max_size=600), flipped, cut,
                   st.tuples(flipped, st.integers(0, len(valid))).map(lambda t: t[0][:t[1]]))


def _apply(data: bytes, edits) -> bytes:
  out = bytearray(data)
  for i, b in edits:
    out[i] = b
  return bytes(out)


def _never_crashes(fn, *args) -> None:
  try:
    fn(*args)
  except JaxvadError:
    pass


@_FUZZ
@given(data=_mutations(_valid_mat()))
def test_fuzz_mat_label_files(data, tmp_path):
  path = _write(tmp_path / "ped2.mat", data)
  _never_crashes(public._read_gt_mat, path)
  _never_crashes(public._read_vol_label, path)
  _never_crashes(public._mat_variables, path)


@_FUZZ
@given(data=_mutations(_valid_npy()))
def test_fuzz_npy_label_files(data, tmp_path):
  path = _write(tmp_path / "frame_labels_ped2.npy", data)
  _never_crashes(lambda: public._flat_labels(public._load_npy(path), path))
  _never_crashes(public._pixel_mask_array, path)


_M_TEXT = st.lists(st.one_of(
    st.just("TestVideoFile{end+1}.gt_frame = ["), st.just("]"), st.just(";\n"),
    st.just(":"), st.just(", "), st.integers(-5, 2**70).map(str), st.text(max_size=6)),
    max_size=20).map("".join)


@_FUZZ
@given(text=_M_TEXT)
def test_fuzz_ucsd_m_files(text, tmp_path):
  path = _write(tmp_path / "UCSDped2.m", text.encode("utf-8", "surrogatepass"))
  try:
    for events in public._read_gt_m(path):
      public.intervals_to_labels(events, 20, one_indexed=True, inclusive=True, source=path)
  except JaxvadError:
    pass


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
              st.floats(allow_nan=True), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["anomalous_frames", "one_indexed", "inclusive",
                                         "num_frames", "notes", "other"]), children,
                        max_size=4)),
    max_leaves=12)


@_FUZZ
@given(value=_JSON, raw=st.binary(max_size=80))
def test_fuzz_labels_json(value, raw, tmp_path):
  path = tmp_path / "labels.json"
  for data in (json.dumps(value).encode(), raw):
    path.write_bytes(data)
    _never_crashes(public._read_labels_json, path, 10)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".mp4", ".avi", ".mov", ".mkv"]),
       as_frame=st.booleans())
def test_fuzz_video_reader(data, suffix, as_frame, tmp_path):
  if as_frame:  # one undecodable image in a folder of frames
    folder = tmp_path / "frames"
    shutil.rmtree(folder, ignore_errors=True)
    _write(folder / "000.png", data)
    path = folder
  else:
    path = _write(tmp_path / f"clip{suffix}", data)
  _never_crashes(video.check_readable, path)
  _never_crashes(video.read_frames, path)
