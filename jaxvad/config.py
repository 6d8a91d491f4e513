"""Typed experiment configs: TOML files under configs/, validated into dataclasses.

A config has four fixed sections (`data`, `train`, `score`) plus `model`, whose
schema belongs to the method named by the top-level `method` key (each method
method declares a `model_config` dataclass, `jaxvad.methods.base.Method`). Every key is checked: an unknown key
or a value of the wrong type is a `ConfigError` that names the key.

Any key can be overridden with `section.key=value` strings (the value is parsed
as a TOML value, so `train.steps=200`, `model.features=[16, 32]`,
`data.grayscale=false`; bare words such as `data.scene=conveyor` are strings).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import pathlib
import tomllib
import types
import typing
from typing import Any

from jaxvad import methods
from jaxvad.errors import ConfigError

# Kept here (not imported) so that loading a config does not import the evaluation stack;
# tests/test_config.py checks they match evaluation.protocol, evaluation.thresholds, data.public.
PROTOCOL_NAMES = ("jaxvad", "ano_pred", "macro")
# Threshold methods calibrated on normal validation frames -> their parameter's keyword.
THRESHOLD_PARAMS = {"mean_k_std": "k", "margin_from_worst": "margin",
                    "target_false_alarm_rate": "rate"}
PUBLIC_LAYOUTS = ("ucsd", "avenue", "shanghaitech", "frames", "intervals", "mvtec")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the frames come from and how they are cut into windows."""
  dataset: str = "synth"            # "synth" (the embedded benchmark), a public layout
                                    # (ucsd | avenue | shanghaitech | frames | intervals |
                                    # mvtec) or "auto" (detected from the folder; see
                                    # data/public.py)
  scene: str = "pickplace"          # synth scene: pickplace | conveyor
  preset: str = "tiny"              # synth preset: tiny | medium | small | paper
  root: str = "data/synth/tiny"     # synth: folder holding <scene>/ (render cache);
                                    # public: the dataset folder (e.g. .../UCSDped2)
  seed: int = 0                     # renderer seed; public layouts: seeds val_from_train
  size: tuple[int, ...] = ()        # (H, W) to resize frames to; () keeps the stored size
  roi: tuple[int, ...] = ()         # [x, y, w, h]: crop every clip to this region, in pixels
                                    # of the frames as loaded (after data.size; the stored
                                    # size when size is empty), so the frames, workspace masks,
                                    # class maps and pixel masks are h x w; () = whole frame
  grayscale: bool = True
  window: int = 8                   # frames per training window (T)
  stride: int = 2                   # step between training windows
  val_from_train: int | float = 0   # public layouts without a val split: hold out N normal
                                    # training videos (an int) or that fraction of them (a
                                    # float in (0, 1)) as the val split; 0 = off
                                    # (jaxvad.data.datasets.val_from_train_names says which)

  def validate(self):
    datasets = ("synth", "auto", *PUBLIC_LAYOUTS)
    _check(self.dataset in datasets, "data.dataset", self.dataset, f"one of: {', '.join(datasets)}")
    _check(self.dataset == "synth" or len(self.size) == 2, "data.size", self.size,
           "[H, W] for a public dataset (their frame sizes differ; frames are resized to it)")
    _check(self.window >= 1, "data.window", self.window, "an integer >= 1")
    _check(self.stride >= 1, "data.stride", self.stride, "an integer >= 1")
    _check(len(self.size) in (0, 2) and all(s > 0 for s in self.size),
           "data.size", self.size, "[] or [H, W] with positive sizes")
    roi = self.roi
    _check(len(roi) in (0, 4) and all(v >= 0 for v in roi) and (not roi or min(roi[2:]) > 0),
           "data.roi", roi, "[] (the whole frame) or [x, y, w, h] in pixels of the loaded "
           "frames, with x, y >= 0 and w, h > 0")
    if roi and len(self.size) == 2:  # else checked against the stored frames when loading
      (h, w), (rx, ry, rw, rh) = self.size, roi
      _check(rx + rw <= w and ry + rh <= h, "data.roi", roi,
             f"a region inside the {w}x{h} (WxH) frames of data.size = [{h}, {w}]: "
             f"x + w <= {w} and y + h <= {h} (data.roi is in pixels after resizing)")
    v = self.val_from_train
    _check(v == 0 or (isinstance(v, int) and v >= 1) or (isinstance(v, float) and 0 < v < 1),
           "data.val_from_train", v,
           "0 (off), an integer N >= 1 (training videos) or a fraction in (0, 1)")
    _check(v == 0 or self.dataset != "synth", "data.val_from_train", v,
           "0 for the synthetic benchmark (it has its own val split); it carves a val split "
           "from the training videos of a public dataset without one")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and checkpointing."""
  steps: int = 1000
  batch_size: int = 16              # global batch, split over all devices
  learning_rate: float = 1e-3
  seed: int = 0                     # parameter init, data order and step RNG
  compute_dtype: str = "float32"    # float32 | bfloat16 (parameters stay float32)
  checkpoint_every: int = 250
  keep_checkpoints: int = 2
  log_every: int = 25               # also how often the loss is checked for NaN

  def validate(self):
    _check(self.steps >= 1, "train.steps", self.steps, "an integer >= 1")
    _check(self.batch_size >= 1, "train.batch_size", self.batch_size, "an integer >= 1")
    _check(self.learning_rate > 0, "train.learning_rate", self.learning_rate, "a positive number")
    _check(self.compute_dtype in ("float32", "bfloat16"), "train.compute_dtype",
           self.compute_dtype, "float32 or bfloat16")
    _check(self.checkpoint_every >= 1, "train.checkpoint_every", self.checkpoint_every,
           "an integer >= 1")
    _check(self.keep_checkpoints >= 1, "train.keep_checkpoints", self.keep_checkpoints,
           "an integer >= 1")
    _check(self.log_every >= 1, "train.log_every", self.log_every, "an integer >= 1")


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
  """How per-frame scores are computed from a trained model."""
  smoothing: int = 1                # centred moving-average window over per-frame scores
  batch_size: int = 16              # windows per scoring batch
  protocol: str = "jaxvad"          # evaluation protocol preset (jaxvad.evaluation.protocol.PROTOCOLS)
  threshold: str = "mean_k_std"     # how the decision threshold is calibrated on the normal
                                    # val split: mean_k_std | margin_from_worst |
                                    # target_false_alarm_rate | none
  threshold_param: float = 3.0      # its parameter: k | margin (score units) | rate
  worst_frames: int = 4             # frames shown with error heat maps in the report
  bootstrap: int = 1000             # resamples of test clips behind every 95 % interval (0: none)
  reduce: str = "frame"             # the per-frame score: frame (the method's own, whole frame)
                                    # | max_patch (the worst patch's patch_metric) |
                                    # top_k_patches (mean over the top_k worst patches); patch
                                    # scores need a method whose ScoreSpec has an image_metric
  patch_metric: str = "psnr"        # the patches' metric: psnr | mse | ssim (worst = lowest
                                    # PSNR / SSIM, highest MSE); unused by reduce = frame
  patch_size: int = 0               # patch side in pixels; 0 = 32 px at 256x256 scaled with the
                                    # frame (round(32 min(H, W) / 256), >= 4; >= 6 for SSIM)
  patch_stride: int = 0             # pixels between patches (<= patch_size); 0 = patch_size // 2
  top_k: int = 4                    # patches averaged by top_k_patches
  term_weights: str = "config"      # a score of several terms (f2lm): config (the method's
                                    # weights, e.g. model.score_weights) | val_grid (grid-searched
                                    # on the validation split's labelled anomalous frames)

  def validate(self):
    _check(self.smoothing >= 1, "score.smoothing", self.smoothing, "an integer >= 1")
    _check(self.batch_size >= 1, "score.batch_size", self.batch_size, "an integer >= 1")
    _check(self.protocol in PROTOCOL_NAMES, "score.protocol", self.protocol,
           f"one of: {', '.join(PROTOCOL_NAMES)}")
    _check(self.threshold in THRESHOLD_PARAMS or self.threshold == "none", "score.threshold",
           self.threshold, f"one of: {', '.join(THRESHOLD_PARAMS)}, none")
    _check(self.threshold_param >= 0, "score.threshold_param", self.threshold_param,
           "a number >= 0")
    _check(self.term_weights in ("config", "val_grid"), "score.term_weights", self.term_weights,
           "config or val_grid")
    _check(self.worst_frames >= 0, "score.worst_frames", self.worst_frames, "an integer >= 0")
    _check(self.bootstrap >= 0, "score.bootstrap", self.bootstrap, "an integer >= 0 (0: no "
           "intervals)")
    _check(self.reduce in ("frame", "max_patch", "top_k_patches"), "score.reduce", self.reduce,
           "one of: frame, max_patch, top_k_patches")
    _check(self.patch_metric in ("psnr", "mse", "ssim"), "score.patch_metric",
           self.patch_metric, "one of: psnr, mse, ssim")
    _check(self.patch_size >= 0, "score.patch_size", self.patch_size,
           "an integer >= 0 (pixels; 0 = automatic)")
    _check(self.patch_stride >= 0, "score.patch_stride", self.patch_stride,
           "an integer >= 0 (pixels; 0 = automatic)")
    _check(self.patch_size == 0 or self.patch_stride <= self.patch_size, "score.patch_stride",
           self.patch_stride, f"at most score.patch_size = {self.patch_size}")
    _check(self.top_k >= 1, "score.top_k", self.top_k, "an integer >= 1")


@dataclasses.dataclass(frozen=True)
class Config:
  name: str
  method: str
  data: DataConfig
  train: TrainConfig
  score: ScoreConfig
  model: Any                        # the method's ModelConfig dataclass

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


# --------------------------------------------------------------------------- loading


def available_configs() -> list[str]:
  """Names of the configs shipped with jaxvad (usable as `--config NAME`)."""
  files = importlib.resources.files("jaxvad.configs")
  return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_config(name_or_path: str | pathlib.Path, overrides: typing.Sequence[str] = ()) -> Config:
  """Loads a config by shipped name (`demo`) or file path, applies overrides and validates.

  Args:
    name_or_path: a name from `available_configs()` or a path to a `.toml` file.
    overrides: `section.key=value` strings, applied in order.

  Returns:
    The validated `Config`.

  Raises:
    ConfigError: unknown config, unknown key, bad value; the message names the key.
  """
  path = pathlib.Path(name_or_path)
  if path.suffix == ".toml" or path.exists():
    if not path.is_file():
      raise ConfigError(f"config file {path} does not exist")
    try:
      text, source = path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as e:  # a binary or unreadable file: one line
      raise ConfigError(f"cannot read config file {path} as TOML text ({type(e).__name__}: "
                        f"{getattr(e, 'strerror', None) or e})") from None
  else:
    files = importlib.resources.files("jaxvad.configs")
    resource = files / f"{name_or_path}.toml"
    if not resource.is_file():
      raise ConfigError(f"unknown config {name_or_path!r}: give a .toml path or one of "
                        f"{', '.join(available_configs())}")
    text, source = resource.read_text(), f"configs/{name_or_path}.toml"
  try:
    raw = tomllib.loads(text)
  except tomllib.TOMLDecodeError as e:
    raise ConfigError(f"{source} is not valid TOML: {e}") from None
  for override in overrides:
    apply_override(raw, override)
  return config_from_dict(raw, source=source)


def config_from_dict(raw: dict, *, source: str = "config") -> Config:
  """Builds and validates a `Config` from a nested dict (as read from TOML or JSON)."""
  raw = dict(raw)
  unknown = set(raw) - {f.name for f in dataclasses.fields(Config)}
  if unknown:
    raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}; "
                      f"expected name, method, data, train, score, model")
  method_name = raw.get("method")
  if not isinstance(method_name, str):
    raise ConfigError(f"{source}: `method` must be set to one of {methods.names()}")
  method = methods.get(method_name)
  return Config(
      name=_coerce(raw.get("name", method_name), str, "name"),
      method=method_name,
      data=_build(DataConfig, raw.get("data", {}), "data"),
      train=_build(TrainConfig, raw.get("train", {}), "train"),
      score=_build(ScoreConfig, raw.get("score", {}), "score"),
      model=_build(method.model_config, raw.get("model", {}), "model"),
  )


def apply_override(raw: dict, override: str) -> None:
  """Sets `section.key=value` (value parsed as TOML, a bare word as a string) in a raw dict."""
  key, sep, value = override.partition("=")
  key = key.strip()
  if not sep or not key:
    raise ConfigError(f"override {override!r} must look like section.key=value")
  try:
    parsed = tomllib.loads(f"v = {value}")["v"]
  except tomllib.TOMLDecodeError:
    parsed = value.strip()  # a bare word is a string
  *parents, leaf = key.split(".")
  node = raw
  for part in parents:
    node = node.setdefault(part, {})
    if not isinstance(node, dict):
      raise ConfigError(f"override {override!r}: {part} is not a section")
  node[leaf] = parsed


def _build(cls, values: dict, section: str):
  if not isinstance(values, dict):
    raise ConfigError(f"`{section}` must be a table of keys, got {values!r}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = set(values) - set(fields)
  if unknown:
    raise ConfigError(f"unknown key(s) {', '.join(f'{section}.{k}' for k in sorted(unknown))}; "
                      f"{section} accepts: {', '.join(fields)}")
  hints = typing.get_type_hints(cls)
  kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
  obj = cls(**kwargs)
  if hasattr(obj, "validate"):
    obj.validate()
  return obj


def _coerce(value, annotation, key: str):
  """Checks `value` against a field annotation (str/int/float/bool, tuples, optionals)."""
  origin = typing.get_origin(annotation)
  if origin in (typing.Union, types.UnionType):
    options = typing.get_args(annotation)
    if value is None and type(None) in options:
      return None
    errors = []
    for option in options:
      if option is type(None):
        continue
      try:
        return _coerce(value, option, key)
      except ConfigError as e:
        errors.append(str(e))
    raise ConfigError(errors[0])
  if origin is tuple:
    if not isinstance(value, (list, tuple)):
      raise ConfigError(f"{key} must be a list, got {value!r}")
    args = typing.get_args(annotation)
    item_type = args[0] if args else Any
    return tuple(_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
  if annotation is Any:
    return value
  if annotation is bool:
    if not isinstance(value, bool):
      raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value
  if annotation is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise ConfigError(f"{key} must be an integer, got {value!r}")
    return value
  if annotation is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ConfigError(f"{key} must be a number, got {value!r}")
    return float(value)
  if annotation is str:
    if not isinstance(value, str):
      raise ConfigError(f"{key} must be a string, got {value!r}")
    return value
  raise TypeError(f"config field {key} has an unsupported annotation {annotation!r}")


def _check(ok: bool, key: str, value, expected: str) -> None:
  if not ok:
    raise ConfigError(f"{key} = {value!r} is invalid: expected {expected}")
