"""Multi-process (multi-host) training, on one machine: `jaxvad train --coordinator ...
--num-processes 2 --process-id I` run as two local processes of 2 CPU devices each, against one
process with 4 devices.

One fixture trains the same tiny config (tests/configs/tiny_test.toml: two phases and a
`fit`, on a UCSD-layout folder of random frames) three ways: two processes, 4 steps, through
the CLI; one process on 4 of this process's devices, 4 steps (the reference, in this process,
while the two run); and the reference's step-2 checkpoint resumed by two processes, which go
on past step 4 until process 1 is killed. The processes run tests/distributed_worker.py: the
CLI, with every batch it reads recorded. Two launches of two processes, not four: each
process spends seconds importing jax and compiling.
"""

import fcntl
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import cv2
import jax
import numpy as np
import pytest

from jaxvad import config as config_lib
from jaxvad import sharding, train
from jaxvad.data import pipeline
from tests import distributed_worker

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIG = REPO / "tests" / "configs" / "tiny_test.toml"
STEPS = 4
# 4 clips of 24 frames, windows of 4 every 2 frames: 44 windows, more than the 4 x 8 that 4
# steps read, so no window repeats within the run (rows are told apart by their content).
CLIPS, FRAMES = 4, 24
RUN_TIMEOUT_S = 240   # one launch of two processes (each imports jax and compiles its steps)
# A survivor must stop within jaxvad's peer timeout, plus a margin for a loaded machine (jax's
# own heartbeat timeout, after which it would abort instead, is longer).
KILL_LIMIT_S = sharding.PEER_TIMEOUT_S + 15


def overrides(data_root, steps=STEPS):
  return [f"train.steps={steps}", "train.checkpoint_every=2", "data.stride=2",
          "data.dataset=ucsd", f"data.root={data_root}"]


def write_frames(root: pathlib.Path) -> pathlib.Path:
  rng = np.random.default_rng(0)
  for c in range(CLIPS):
    folder = root / "Train" / f"Train{c + 1:03d}"
    folder.mkdir(parents=True)
    for t in range(FRAMES):
      assert cv2.imwrite(str(folder / f"{t + 1:03d}.tif"),
                         rng.integers(0, 256, (16, 16), dtype=np.uint8))
  return root


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def worker_env(record) -> dict:
  """This environment with 2 CPU devices per process (conftest asks for 8)."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": " ".join(flags + ["--xla_force_host_platform_device_count=2"])}
  env.pop("JAXVAD_TEST_BATCHES", None)
  if record is not None:
    env["JAXVAD_TEST_BATCHES"] = str(record)
  return env


class TwoProcesses:
  """`jaxvad train ... --coordinator 127.0.0.1:PORT --num-processes 2 --process-id I` for
  I = 0, 1; stdout and stderr go to `<workdir>.p<I>.log`. Used as a context manager: any
  process still running at the end is killed."""

  def __init__(self, workdir, argv, record=None):
    self.workdir = pathlib.Path(workdir)
    port = free_port()
    self.logs = [self.workdir.with_name(f"{self.workdir.name}.p{i}.log") for i in range(2)]
    self.procs = []
    try:
      for i, log in enumerate(self.logs):
        with open(log, "wb") as out:
          self.procs.append(subprocess.Popen(
              [sys.executable, "-m", "tests.distributed_worker", "train", "--config",
               str(CONFIG), "--workdir", str(self.workdir), *argv,
               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
               "--process-id", str(i)],
              cwd=REPO, env=worker_env(record), stdout=out, stderr=subprocess.STDOUT))
    except BaseException:
      self.__exit__()
      raise

  def wait(self, timeout=RUN_TIMEOUT_S) -> list[int]:
    deadline = time.monotonic() + timeout
    return [p.wait(timeout=max(deadline - time.monotonic(), 1)) for p in self.procs]

  def output(self, i) -> str:
    return self.logs[i].read_text(errors="replace")

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    for p in self.procs:
      if p.poll() is None:
        p.kill()
        p.wait()


def leaves(state) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


def max_difference(a, b) -> float:
  return max(float(np.max(np.abs(x.astype(np.float64) - y), initial=0.0))
             for x, y in zip(leaves(a), leaves(b)))


def train_all(root: pathlib.Path) -> dict:
  """The three runs (see the module docstring) in `root`; returns what the tests read besides
  the run folders: each process's output and how process 0 of the resumed run ended."""
  data = write_frames(root / "ucsd")
  # Two processes, through the CLI; the reference trains here meanwhile (same config).
  with TwoProcesses(root / "two", overrides(data),
                    record=root / "two.batches{process}.jsonl") as two:
    config = config_lib.load_config(str(CONFIG), overrides(data))
    with pytest.MonkeyPatch.context() as mp:
      mp.setattr(pipeline, "prefetch", distributed_worker.recording_prefetch(
          pipeline.prefetch, str(root / "one.batches.jsonl")))
      train.train(config, root / "one", progress=False, devices=jax.devices()[:4])
    codes = two.wait()
  assert codes == [0, 0], two.output(0)[-3000:] + two.output(1)[-3000:]
  # The reference's step-2 checkpoint resumed by two processes, on and on (more steps and
  # checkpoints kept: keys a resume may change); once its step-4 checkpoint is written,
  # process 1 is killed.
  shutil.copytree(root / "one", root / "resumed")
  shutil.rmtree(root / "resumed" / train.CHECKPOINT_DIR / str(STEPS))
  assert train.latest_step(root / "resumed") == 2
  argv = ["--resume", *overrides(data, steps=100_000), "train.keep_checkpoints=100"]
  with TwoProcesses(root / "resumed", argv,
                    record=root / "resumed.batches{process}.jsonl") as resumed:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (train.latest_step(root / "resumed") or 0) < STEPS:
      assert time.monotonic() < deadline and all(p.poll() is None for p in resumed.procs), (
          resumed.output(0)[-3000:] + resumed.output(1)[-3000:])
      time.sleep(0.1)
    resumed.procs[1].kill()
    killed = time.monotonic()
    try:
      code = resumed.procs[0].wait(timeout=KILL_LIMIT_S)
    except subprocess.TimeoutExpired:
      code = None
    took = time.monotonic() - killed
  return {"two": [two.output(0), two.output(1)],
          "survivor": {"code": code, "seconds": took, "output": resumed.output(0)}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The runs, made once per test session: under pytest-xdist the workers share them (a file
  lock; the first one to need them trains, the others wait and read), since a second set would
  cost a worker as long again."""
  shared = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = shared.parent   # the session's folder, above each worker's own
  root = shared / "distributed"
  with open(shared / "distributed.lock", "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      done = root / "outputs.json"
      if not done.is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        done.write_text(json.dumps(train_all(root)))
      outputs = json.loads(done.read_text())
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  _, one = train.load_trained(root / "one")
  return {"root": root, "one": one, **outputs}


def test_each_process_reads_its_own_block_of_every_global_batch(runs):
  """Check 1: process p reads rows [4p, 4p + 4) of global batch k: disjoint blocks that
  together are the batch the one-process run reads, in its order; a resumed run starts at the
  batch after its checkpoint."""
  root = runs["root"]
  one = distributed_worker.read_batches(root / "one.batches.jsonl")
  assert sorted(one) == list(range(STEPS)) and all(len(set(r)) == 8 for r in one.values())
  for run, first_batch in (("two", 0), ("resumed", 2)):
    parts = [distributed_worker.read_batches(root / f"{run}.batches{p}.jsonl") for p in (0, 1)]
    for part in parts:   # consecutive batches from the first after the checkpoint
      assert sorted(part) == list(range(first_batch, first_batch + len(part))), run
    if run == "two":     # (the resumed run went on past step 4)
      assert sorted(parts[0]) == sorted(parts[1]) == list(range(STEPS))
    for k in range(first_batch, STEPS):
      block0, block1 = parts[0][k], parts[1][k]
      assert len(block0) == len(block1) == 4
      assert not set(block0) & set(block1), (run, k)
      assert block0 + block1 == one[k], (run, k)


def test_two_processes_train_what_one_process_with_as_many_devices_trains(runs):
  """Check 2, and the first half of check 3: the checkpoint the two processes wrote together,
  restored in this one process, holds the reference's state (parameters, optimizer states and
  the statistics `fit` computed after the last step).

  Both runs compute the same per-device gradients from the same rows; only the sum over the 4
  devices differs (XLA's in-process all-reduce vs gloo across processes), so float32 rounding
  may differ in the last bits (measured: max |diff| 3e-8). The tolerance is that of
  tests/test_train.py's 1- vs 8-device test (data parallelism changes only the order of float
  sums): rtol 2e-4, atol 1e-6."""
  root = runs["root"]
  _, state = train.load_trained(root / "two")
  assert int(state.step) == STEPS
  print(f"max |2-process - 1-process| over the state: {max_difference(state, runs['one']):.3g}")
  for x, y in zip(leaves(state), leaves(runs["one"])):
    np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-6)
  # Process 0 alone wrote the run's files: one log line per step, not one per process.
  log = (root / "two" / train.LOG_FILE).read_text().splitlines()
  assert [json.loads(line)["step"] for line in log] == list(range(1, STEPS + 1))
  assert json.loads((root / "two" / train.RUN_FILE).read_text())["frame_shape"] == [16, 16, 1]
  for i in (0, 1):
    assert f"trained tiny_test to step {STEPS}" in runs["two"][i]


def test_a_one_process_checkpoint_resumed_by_two_processes_continues_its_trajectory(runs):
  """Second half of check 3: the reference's step-2 checkpoint, resumed by two processes (4
  devices: the same mesh size), is at step 4 where the reference ended. Not `error_stats`:
  `fit` runs after the last step only, and this run goes on past step 4."""
  _, state = train.load_trained(runs["root"] / "resumed", step=STEPS)
  assert int(state.step) == STEPS
  trained = lambda s: [s.generator, s.critic, s.refiner]   # noqa: E731
  print(f"max |resumed - 1-process| at step {STEPS}: "
        f"{max_difference(trained(state), trained(runs['one'])):.3g}")
  for x, y in zip(leaves(trained(state)), leaves(trained(runs["one"]))):
    np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-6)


def test_a_killed_process_stops_the_other_with_one_error_line(runs):
  """Check 4: process 1 of the resumed run killed (SIGKILL) mid-run: process 0 exits 2 within
  the peer timeout plus a margin, with jaxvad's one-line error; no hang in the collective it
  waits in, and not jax's abort (after its longer heartbeat timeout). Which line depends on
  where process 0 was: a gloo error in a step or in orbax's checkpoint sync (at once: "process
  0 of 2 failed in ...: JaxRuntimeError: ... Connection reset by peer; if another process died
  ..."), or a wait that never returns, ended by the peer watch ("process 0 of 2 stops: process
  1 gave no sign of life for 10 s ...")."""
  survivor = runs["survivor"]
  out = survivor["output"]
  assert survivor["code"] is not None, (
      f"process 0 still ran {KILL_LIMIT_S} s after process 1 was killed: {out[-3000:]}")
  print(f"process 0 stopped {survivor['seconds']:.1f} s after process 1 was killed")
  last = out.replace("\r", "\n").strip().splitlines()[-1]
  print(f"its last line: {last}")
  assert survivor["code"] == 2, out[-3000:]
  assert last.startswith("jaxvad train: error: process 0 of 2 "), last
  assert "restart every process with --resume" in last
  assert "Traceback" not in out and "Check failure" not in out


@pytest.mark.parametrize("flags, expected", [
    (["--coordinator", "127.0.0.1:1234"], "give --num-processes and --process-id too"),
    (["--process-id", "0"], "give --coordinator and --num-processes too"),
    (["--coordinator", "host", "--num-processes", "2", "--process-id", "0"],
     "--coordinator = 'host' must be HOST:PORT"),
    (["--coordinator", "h:70000", "--num-processes", "2", "--process-id", "0"],
     "the port must be in 1..65535"),
    (["--coordinator", "h:1234", "--num-processes", "0", "--process-id", "0"],
     "--num-processes = 0 must be an integer >= 1"),
    (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id = 2 must be in 0..1"),
])
def test_bad_multi_process_flags_are_one_line_errors(flags, expected, tmp_path, capsys):
  from jaxvad import cli
  code = cli.main(["train", "--config", str(CONFIG), "--workdir", str(tmp_path / "run"), *flags,
                   f"data.root={tmp_path / 'data'}", "data.dataset=ucsd"])
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("jaxvad train: error: ") and expected in err, err
  assert len(err.strip().splitlines()) == 1 and not jax.distributed.is_initialized()
