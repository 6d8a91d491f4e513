"""Safe file-system access for every command: nothing read is overwritten, nothing is half-written.

One place for what each command must do before and while it writes:

  check_outputs       refuse (before any work) an output path that is, holds or lies inside an
                      input: `jaxvad score clip.mp4 --out clip.mp4` must not replace the video
  check_writable_dir  prove a folder can be written (create and delete a probe file) and has
                      room, before minutes of scoring or training that would then be lost
  write_atomic        write to a unique hidden temporary file in the same folder, fsync, rename
  ensure_dir          mkdir -p, with the error as one line
  os_errors           a context manager turning any OSError into an `OutputError` whose one-line
                      message names the path and the fix (read-only, permission, full disk, ...)
  read_json           a JSON file of a run folder, a corrupt one named as such

Root passes permission checks (`os.access`, mode bits) that a read-only mount or a full disk
still fail, so writability is tested by writing, never by asking.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping

from jaxvad.errors import ConfigError, OutputError

__all__ = [
    "os_error_message", "os_errors", "ensure_dir", "check_writable_dir", "check_outputs",
    "write_atomic", "write_json_atomic", "append_text", "read_json", "free_bytes",
    "remove_temporaries", "TEMP_MARK", "run_files",
]

PathLike = str | os.PathLike
TEMP_MARK = ".jaxvad-tmp-"   # every temporary this module creates holds this in its name

# What `jaxvad train` writes into a run folder (`jaxvad.train` uses these names). Here, not in
# train, so commands can check their outputs against a run's files before importing jax.
RUN_CONFIG, RUN_INFO, RUN_LOG, RUN_CHECKPOINTS = (
    "config.json", "run.json", "train_log.jsonl", "checkpoints")


def run_files(workdir: PathLike) -> dict[str, pathlib.Path]:
  """A run folder's files by name: what training writes and commands reading a run must not
  replace."""
  workdir = pathlib.Path(workdir)
  return {name: workdir / name for name in (RUN_CONFIG, RUN_INFO, RUN_LOG, RUN_CHECKPOINTS)}


def human_bytes(n: int) -> str:
  """`n` bytes for a message: 312 KB, 4.2 MB, 1.5 GB."""
  if n < 2**20:
    return f"{n / 2**10:.0f} KB"
  if n < 2**30:
    return f"{n / 2**20:.1f} MB"
  return f"{n / 2**30:.1f} GB"


_mb = human_bytes


def free_bytes(path: PathLike) -> int | None:
  """Free bytes on the file system holding `path` (or its nearest existing parent)."""
  try:
    return shutil.disk_usage(_existing_ancestor(pathlib.Path(path))).free
  except OSError:
    return None


def os_error_message(e: OSError, path: PathLike | None = None, *, action: str = "write",
                     name_given: bool = False) -> str:
  """One line for an OSError: the path (the error's own file, or `path` if `name_given` or it
  has none), what went wrong in words, and the fix."""
  where = path if name_given or e.filename is None else e.filename
  code = e.errno
  if code == errno.EROFS:
    why, fix = "the file system is read-only", "choose a folder on a writable disk"
  elif code in (errno.EACCES, errno.EPERM):
    why, fix = "permission denied", "fix the folder's permissions or choose another folder"
  elif code in (errno.ENOSPC, errno.EDQUOT):
    free = free_bytes(where) if where is not None else None
    why = "the disk is full" + (f" ({_mb(free)} free)" if free is not None else "")
    fix = "free some space or choose a folder on another disk"
  elif code == errno.ENOENT:
    why, fix = "a folder on the way does not exist", "create it first or fix the path"
  elif code == errno.ENOTDIR:
    why, fix = "a part of the path is a file, not a folder", "fix the path"
  elif code == errno.EISDIR:
    why, fix = "it is a folder", "give a file name"
  elif code == errno.ENAMETOOLONG:
    why, fix = "the name is too long", "choose a shorter path"
  else:
    why, fix = e.strerror or type(e).__name__, "check the path and the disk"
  return f"cannot {action} {where}: {why}; {fix}"


@contextlib.contextmanager
def os_errors(path: PathLike | None = None, *, action: str = "write",
              name_given: bool = False) -> Iterator[None]:
  """Turns an OSError raised inside into an `OutputError` with a one-line message."""
  try:
    yield
  except OSError as e:
    raise OutputError(os_error_message(e, path, action=action, name_given=name_given)) from e


def _existing_ancestor(path: pathlib.Path) -> pathlib.Path:
  path = pathlib.Path(os.path.abspath(path))
  while not path.exists() and path != path.parent:
    path = path.parent
  return path


def ensure_dir(path: PathLike, *, what: str = "folder") -> pathlib.Path:
  """`mkdir -p path`; an existing file there, or any OSError, is one `OutputError`."""
  path = pathlib.Path(path)
  if path.exists() and not path.is_dir():
    raise OutputError(f"cannot use {path} as the {what}: it is a file; choose a folder")
  with os_errors(path, action=f"create the {what}"):
    path.mkdir(parents=True, exist_ok=True)
  return path


def check_writable_dir(path: PathLike, *, what: str = "output folder", need_bytes: int = 0,
                       must_exist: bool = False) -> pathlib.Path:
  """Proves, before long work, that files can be written into folder `path`.

  Writes and deletes a small probe file in `path`, or, if it does not exist yet (and
  `must_exist` is False), in the nearest existing parent where it would be created; nothing
  is left behind. Then checks that `need_bytes` are free.

  Raises:
    OutputError: a file stands where a folder is needed, the folder is missing (`must_exist`),
      read-only or not permitted, or the disk is too full; the message names the path and fix.
  """
  path = pathlib.Path(path)
  if path.exists() and not path.is_dir():
    raise OutputError(f"cannot use {path} as the {what}: it is a file; choose a folder")
  if not path.exists() and must_exist:
    raise OutputError(f"cannot write into the {what} {path}: it does not exist; create it "
                      f"first or choose another folder")
  probe_dir = _existing_ancestor(path)
  if not probe_dir.is_dir():
    raise OutputError(f"cannot create the {what} {path}: {probe_dir} is a file, not a folder; "
                      f"fix the path")
  probe = probe_dir / f"{TEMP_MARK}probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  try:
    with os_errors(path, action=f"write into the {what}", name_given=True):
      with open(probe, "wb") as f:
        f.write(b"\0" * 4096)  # a 0-byte file fits on a full disk; a page does not
        f.flush()
        os.fsync(f.fileno())
  finally:
    with contextlib.suppress(OSError):
      probe.unlink()
  free = free_bytes(probe_dir)
  if need_bytes and free is not None and free < need_bytes:
    raise OutputError(f"cannot write into the {what} {path}: it needs about {_mb(need_bytes)} "
                      f"but its disk has {_mb(free)} free; free some space or choose another "
                      f"folder")
  return path


def _resolved(path: PathLike) -> pathlib.Path:
  return pathlib.Path(os.path.realpath(path))


def _same(a: pathlib.Path, b: pathlib.Path) -> bool:
  if a == b:
    return True
  try:  # hard links and bind mounts: same inode
    return a.exists() and b.exists() and os.path.samefile(a, b)
  except OSError:
    return False


def _inside(child: pathlib.Path, parent: pathlib.Path) -> bool:
  return child != parent and child.is_relative_to(parent)


def check_outputs(outputs: Mapping[str, PathLike | None],
                  inputs: Mapping[str, PathLike | None | Iterable[PathLike]]) -> None:
  """Refuses outputs that would overwrite, or write into, an input; call before any work.

  Args:
    outputs: description -> a file or folder this command writes (None entries are skipped).
      A folder output (`--report`) should list the files and subfolders it writes.
    inputs: description -> a file or folder it reads (or several), e.g. the input video, a
      frame folder, a dataset root, a run's config.json.

  Raises:
    OutputError: an output equals an input (symlinks and hard links followed), lies inside an
      input folder, or an input lies inside an output folder (which the command replaces).
  """
  flat = []
  for what, paths in inputs.items():
    if paths is None:
      continue
    for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths):
      flat.append((what, pathlib.Path(p), _resolved(p)))
  for out_what, out in outputs.items():
    if out is None:
      continue
    out_r = _resolved(out)
    for in_what, given, in_r in flat:
      if _same(out_r, in_r):
        problem = f"is the {in_what} {given}"
      elif _inside(out_r, in_r):
        problem = f"lies inside the {in_what} {given}, which is only read"
      elif _inside(in_r, out_r):
        problem = f"holds the {in_what} {given}"
      else:
        continue
      raise OutputError(f"{out_what} {out} {problem}: writing it would destroy input; choose "
                        f"another path")


def _temp_name(path: pathlib.Path) -> pathlib.Path:
  # Hidden, unique and in the same folder, so the rename is atomic and a crash leaves nothing
  # a reader could mistake for the real file.
  return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_atomic(path: PathLike, data: str | bytes) -> None:
  """Writes `data` to a temporary file beside `path`, fsyncs it and renames it over `path`.

  Readers never see half a file, and a full disk or a crash leaves the old file untouched and
  no temporary behind.

  Raises:
    OutputError: `path` is a folder, its folder is missing, or any write fails (one line).
  """
  path = pathlib.Path(path)
  if path.is_dir():
    raise OutputError(f"cannot write {path}: it is a folder; give a file name")
  if not path.parent.is_dir():
    raise OutputError(f"cannot write {path}: the folder {path.parent} does not exist; create it "
                      f"first or choose another path")
  tmp = _temp_name(path)
  try:
    with os_errors(path, name_given=True):  # the temporary's name would only confuse
      with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
  finally:
    with contextlib.suppress(OSError):
      tmp.unlink()


def write_json_atomic(path: PathLike, obj) -> None:
  """`write_atomic` of `obj` as indented JSON with sorted keys."""
  write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def append_text(path: PathLike, text: str) -> None:
  """Appends `text` to a log file; an OSError is one `OutputError` line."""
  with os_errors(path):
    with open(path, "a", encoding="utf-8") as f:
      f.write(text)


def read_json(path: PathLike, *, what: str = "file", fix: str = "") -> object:
  """Reads a JSON file a command wrote earlier (config.json, run.json).

  Raises:
    ConfigError: it cannot be read or is not valid JSON (truncated, emptied, edited by hand);
      the message names the file, where parsing stopped, and `fix`.
  """
  path = pathlib.Path(path)
  try:
    text = path.read_text(encoding="utf-8")
  except OSError as e:
    raise ConfigError(os_error_message(e, path, action="read")) from None
  except UnicodeDecodeError:
    raise ConfigError(f"{path} ({what}) is not text: it is corrupt{'; ' + fix if fix else ''}") \
        from None
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    state = "empty" if not text.strip() else f"not valid JSON ({e.msg} at line {e.lineno})"
    raise ConfigError(f"{path} ({what}) is {state}: it is corrupt"
                      f"{'; ' + fix if fix else ''}") from None


def remove_temporaries(folder: PathLike, patterns: Iterable[str] = (f"*{TEMP_MARK}*",)) -> None:
  """Deletes leftovers matching `patterns` in `folder` (files or folders); errors ignored."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    return
  for pattern in patterns:
    for p in folder.glob(pattern):
      if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
      else:
        with contextlib.suppress(OSError):
          p.unlink()
