"""torchvision `r3d_18` / `resnet18` state dicts -> `R3D18` / `ResNet18` variables, FFP's
PyTorch port (feiyuhuahuo/Anomaly_Prediction) -> `UNet` / `PatchGAN` variables, and paper 004's
F2LM generator (SkiddieAhn/Paper-Making-Anomalies-More-Anomalous) -> `F2LM` variables.

A user who downloaded torchvision's Kinetics-400 checkpoint (`r3d_18-b3b3357e.pth`) loads it as

  variables = torch_to_flax("r3d_18-b3b3357e.pth")                    # TorchvisionR3D18
  # or into a per-frame partition model with another class count (fc keeps its init):
  variables = load_torch_weights(R3D18(num_classes=8).init(...), "r3d_18-b3b3357e.pth",
                                 include_fc=False)

and torchvision's ImageNet resnet18 (`resnet18-f37072fd.pth`) with `arch="resnet18"`:

  variables = torch_to_flax("resnet18-f37072fd.pth", arch="resnet18")  # ResNet18(num_classes=1000)
  variables = load_torch_weights(ResNet18().init(...), "resnet18-f37072fd.pth",
                                 arch="resnet18", include_fc=False)   # backbone only

Mapping (torch -> Flax, `{collection}/{path}`), `arch="r3d_18"` (the default):
  stem.0.weight                      -> params/stem/conv/kernel  OIDHW -> DHWIO (T, H, W, in, out)
  stem.1.weight, .bias               -> params/stem/bn/scale, bias
  stem.1.running_mean, running_var   -> batch_stats/stem/bn/mean, var
  layerX.Y.convK.0 / .1              -> layerX_Y/convK/conv / bn    (same rules)
  layerX.0.downsample.0 / .1         -> layerX_0/downsample/conv / bn
  fc.weight [out, in], fc.bias       -> params/fc/kernel [in, out], params/fc/bias
`arch="resnet18"`:
  conv1.weight                       -> params/conv1/kernel      OIHW -> HWIO (H, W, in, out)
  bn1.weight, .bias                  -> params/bn1/scale, bias
  bn1.running_mean, running_var      -> batch_stats/bn1/mean, var
  layerX.Y.convK / layerX.Y.bnK      -> layerX_Y/convK / bnK        (same rules)
  layerX.0.downsample.0 / .1         -> layerX_0/downsample/conv / bn
  fc.weight [out, in], fc.bias       -> params/fc/kernel [in, out], params/fc/bias
`arch="ffp_unet"` (the port's `models/unet.py` `UNet`, for `jaxvad.models.unet.UNet()`):
  inc.conv.conv.0 / .1 / .3 / .4     -> inc/conv1 / bn1 / conv2 / bn2   (conv OIHW -> HWIO, BN
                                        as above; the convs have no bias)
  downK.mpconv.1.conv.0 / .1 / .3 / .4 -> downK/conv1 / bn1 / conv2 / bn2
  upK.up.weight [in, out, H, W], .bias -> params/upK/up/kernel [H, W, out, in], bias (the
                                        `transpose_kernel=True` layout: the same permutation as
                                        a conv weight, no flip)
  upK.conv.conv.0 / .1 / .3 / .4     -> upK/conv1 / bn1 / conv2 / bn2
  outc.weight, outc.bias             -> params/outc/kernel, bias
`arch="ffp_patchgan"` (the port's `models/pix2pix_networks.py` `PixelDiscriminator`, default
`use_norm=False`, for `jaxvad.models.patchgan.PatchGAN()`):
  net.0 / .2 / .4 / .6 / .8 .weight, .bias -> params/conv0 .. conv4/kernel, bias
`arch="f2lm"` (paper 004's `F2LM_Generator/network/unet.py` `UNet`, for
`jaxvad.models.f2lm.F2LM()`): three ffp_unet encoders, suffixed by S = x (frames), y (motion),
z (labels), the fusion, ffp_unet's decoder:
  inc_S.conv.conv.0 / .1 / .3 / .4   -> inc_S/conv1 / bn1 / conv2 / bn2   (as ffp_unet's inc)
  downK_S.mpconv.1.conv.0 / .1 / .3 / .4 -> downK_S/conv1 / bn1 / conv2 / bn2
  transform_xtoy / transform_xtoz / fusion_conv .conv.0 / .1 / .3 / .4
                                     -> <name>/conv1 / bn1 / conv2 / bn2   (a bare double conv)
  se.fc1 / se.fc2 .weight [out, in], .bias -> params/se/fc1 / fc2/kernel [in, out], bias
  upK.*, outc.*                      -> as ffp_unet
  `F2LM`'s ablations lack the modules they drop (motion=False: *_y and transform_xtoy;
  labels=False: *_z and transform_xtoz; fusion "concat": se; "add": se and fusion_conv).
  `torch_to_flax` reads the variant from the keys, `load_torch_weights` from the model's
  variables, so a checkpoint with modules the model lacks has unknown keys (and the reverse,
  missing ones); `variant={"motion": ..., "labels": ..., "fusion": ...}` names it explicitly.
The FFP port saves training checkpoints as {"net_g": generator, "net_d": discriminator,
optimizer states}, and so does the F2LM code (plus "step", AUC lists); given one, "ffp_unet" and
"f2lm" read its "net_g", "ffp_patchgan" its "net_d".
`*.num_batches_tracked` is dropped (Flax BN has no counter; momentum is fixed).

torch is imported only to read a `.pth` file; dicts of numpy arrays need no torch.
"""

from __future__ import annotations

import os
import types
from typing import Any, Mapping

import numpy as np

from jaxvad.errors import JaxvadError
from jaxvad.models.f2lm import FUSIONS as _F2LM_FUSIONS
from jaxvad.models.r3d import BLOCKS_PER_STAGE   # resnet18 has the same 2 blocks per stage

__all__ = ["torch_to_flax", "load_torch_weights", "key_mapping", "torchvision_keys",
           "ConversionError", "ARCHS", "F2LM_VARIANT"]

# Model names this module converts, and the rank of their conv weights.
ARCHS = ("r3d_18", "resnet18", "ffp_unet", "ffp_patchgan", "f2lm")
_TORCHVISION_ARCHS = ("r3d_18", "resnet18")
_CONV_NDIM = {"r3d_18": 5, "resnet18": 4, "ffp_unet": 4, "ffp_patchgan": 4, "f2lm": 4}
_CONV_LAYOUT = {5: "Conv3d weight [out, in, T, H, W]", 4: "Conv2d weight [out, in, H, W]"}
_SOURCE = {"r3d_18": "torchvision r3d_18", "resnet18": "torchvision resnet18",
           "ffp_unet": "feiyuhuahuo/Anomaly_Prediction UNet",
           "ffp_patchgan": "feiyuhuahuo/Anomaly_Prediction PixelDiscriminator",
           "f2lm": "SkiddieAhn/Paper-Making-Anomalies-More-Anomalous F2LM UNet"}
# The entry of the training checkpoints ({"net_g", "net_d", "optimizer_g", ...}) each arch reads.
_CHECKPOINT_ENTRY = {"ffp_unet": "net_g", "ffp_patchgan": "net_d", "f2lm": "net_g"}
# The first conv of each arch (its output channels say the width) and its channels at width 1.
_FIRST_CONV = {"r3d_18": (("stem", "conv"), 64), "resnet18": (("conv1",), 64),
               "ffp_unet": (("inc", "conv1"), 64), "ffp_patchgan": (("conv0",), 128),
               "f2lm": (("inc_x", "conv1"), 64)}
# Other input convs, whose input channels a mismatch message names (F2LM's other inputs).
_OTHER_INPUT_CONVS = {"f2lm": ((("inc_y", "conv1"), "motion encoder"),
                               (("inc_z", "conv1"), "label encoder"))}
# Linear weights [out, in] (-> Dense kernels [in, out]); each key exists in one arch only.
_LINEAR_WEIGHTS = ("fc.weight", "se.fc1.weight", "se.fc2.weight")
_FFP_LEVELS = 4           # inc, down1..3 (an encoder); up1..3 come back
_FFP_PATCHGAN_CONVS = 5   # net.0, .2, .4, .6, .8 (LeakyReLUs between them hold no parameters)
# `jaxvad.models.f2lm.F2LM`'s module switches, the paper's full model by default (read-only).
F2LM_VARIANT = types.MappingProxyType({"motion": True, "labels": True, "fusion": "concat_se"})
# F2LM's optional encoders: (switch, suffix of its modules, the transform it feeds).
_F2LM_BRANCHES = (("motion", "y", "transform_xtoy"), ("labels", "z", "transform_xtoz"))

_BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


class ConversionError(JaxvadError, ValueError):
  """A state dict that is not the arch's layout (torchvision r3d_18 / resnet18, the FFP port's
  UNet / PixelDiscriminator, the F2LM UNet), or does not fit the model."""


def _check_arch(arch: str) -> None:
  if arch not in ARCHS:
    raise ConversionError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")


def _units(arch: str) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
  """(torch conv prefix, torch BN prefix, Flax conv path, Flax BN path) of every conv + BN unit.

  In forward (= `state_dict()`) order. r3d_18 wraps each unit in a `Sequential(conv, bn[, relu])`
  (`stem.0` / `stem.1`); resnet18 names them apart (`conv1` / `bn1`). Both have a
  `downsample = Sequential(conv, bn)` at block 0 of layer2..4.
  """
  _check_arch(arch)
  if arch not in _TORCHVISION_ARCHS:
    raise ValueError(f"{arch} has no torchvision units")   # internal: callers dispatch first
  if arch == "r3d_18":
    units = [("stem.0", "stem.1", ("stem", "conv"), ("stem", "bn"))]
  else:
    units = [("conv1", "bn1", ("conv1",), ("bn1",))]
  for s in range(1, 5):
    for b in range(BLOCKS_PER_STAGE):
      block, path = f"layer{s}.{b}", (f"layer{s}_{b}",)
      for k in ("1", "2"):
        if arch == "r3d_18":
          units.append((f"{block}.conv{k}.0", f"{block}.conv{k}.1", path + (f"conv{k}", "conv"),
                        path + (f"conv{k}", "bn")))
        else:
          units.append((f"{block}.conv{k}", f"{block}.bn{k}", path + (f"conv{k}",),
                        path + (f"bn{k}",)))
      if s > 1 and b == 0:
        units.append((f"{block}.downsample.0", f"{block}.downsample.1",
                      path + ("downsample", "conv"), path + ("downsample", "bn")))
  return units


def _f2lm_variant(variant: Mapping | None) -> dict[str, Any]:
  """`variant` completed with `F2LM_VARIANT`'s defaults, checked."""
  variant = {**F2LM_VARIANT, **(variant or {})}
  unknown = sorted(set(variant) - set(F2LM_VARIANT))
  if unknown:
    raise ConversionError(f"unknown F2LM variant key(s) {', '.join(unknown)}; expected "
                          f"{', '.join(F2LM_VARIANT)}")
  if variant["fusion"] not in _F2LM_FUSIONS:
    raise ConversionError(f"F2LM fusion must be one of {', '.join(_F2LM_FUSIONS)}, got "
                          f"{variant['fusion']!r}")
  return variant


def _f2lm_variant_of_keys(keys) -> dict[str, Any]:
  """The F2LM variant whose modules a state dict's keys name (any key of a module counts)."""
  modules = {k.split(".", 1)[0] for k in keys}
  variant = {switch: any(m.endswith(f"_{suffix}") or m == transform for m in modules)
             for switch, suffix, transform in _F2LM_BRANCHES}
  variant["fusion"] = ("concat_se" if "se" in modules else
                       "concat" if "fusion_conv" in modules else "add")
  return variant


def _f2lm_variant_of_variables(variables: Mapping) -> dict[str, Any]:
  """The variant of an `F2LM`'s variables (its top-level module names)."""
  modules = set(variables.get("params", {}))
  variant = {switch: f"inc_{suffix}" in modules for switch, suffix, _ in _F2LM_BRANCHES}
  variant["fusion"] = ("concat_se" if "se" in modules else
                       "concat" if "fusion_conv" in modules else "add")
  return variant


def _describe_f2lm(variant: Mapping) -> str:
  return "F2LM(" + ", ".join(f"{k}={variant[k]!r}" for k in F2LM_VARIANT) + ")"


def _add_conv(keys: dict, torch_name: str, path: tuple[str, ...], *, bias: bool) -> None:
  keys[f"{torch_name}.weight"] = ("params", path + ("kernel",))
  if bias:
    keys[f"{torch_name}.bias"] = ("params", path + ("bias",))


def _add_double_conv(keys: dict, prefix: str, path: str) -> None:
  """The ports' `double_conv.conv`, `Sequential(conv, bn, relu, conv, bn, relu)` at `prefix`
  (parameters at indices 0, 1, 3, 4) -> `path`/conv1 / bn1 / conv2 / bn2 (unet's Down / Up)."""
  for k, (conv_index, bn_index) in enumerate(((0, 1), (3, 4)), start=1):
    _add_conv(keys, f"{prefix}.{conv_index}", (path, f"conv{k}"), bias=False)
    for leaf, (collection, name) in _BN_LEAVES.items():
      keys[f"{prefix}.{bn_index}.{leaf}"] = (collection, (path, f"bn{k}", name))


def _add_ffp_encoder(keys: dict, suffix: str = "") -> None:
  """FFP's `inc` (`inconv.conv` is the double conv) and `down1..3` (`mpconv.1` is), each module
  name suffixed (F2LM's "_x", "_y", "_z")."""
  _add_double_conv(keys, f"inc{suffix}.conv.conv", f"inc{suffix}")
  for k in range(1, _FFP_LEVELS):
    _add_double_conv(keys, f"down{k}{suffix}.mpconv.1.conv", f"down{k}{suffix}")


def _add_ffp_decoder(keys: dict) -> None:
  """FFP's `up1..3` (transposed conv `up`, double conv `conv.conv`) and `outc`."""
  for k in range(1, _FFP_LEVELS):
    _add_conv(keys, f"up{k}.up", (f"up{k}", "up"), bias=True)
    _add_double_conv(keys, f"up{k}.conv.conv", f"up{k}")
  _add_conv(keys, "outc", ("outc",), bias=True)


def _ffp_key_mapping(arch: str,
                     variant: Mapping | None = None) -> dict[str, tuple[str, tuple[str, ...]]]:
  """`key_mapping` of the FFP port's UNet ("ffp_unet") or PixelDiscriminator ("ffp_patchgan"),
  or of the F2LM UNet ("f2lm", the modules of `variant`), in `state_dict()` order."""
  keys = {}
  if arch == "ffp_patchgan":
    for i in range(_FFP_PATCHGAN_CONVS):
      _add_conv(keys, f"net.{2 * i}", (f"conv{i}",), bias=True)
    return keys
  if arch == "ffp_unet":
    _add_ffp_encoder(keys)
    _add_ffp_decoder(keys)
    return keys
  variant = _f2lm_variant(variant)
  on = [(suffix, transform) for switch, suffix, transform in _F2LM_BRANCHES if variant[switch]]
  for suffix in ["x"] + [suffix for suffix, _ in on]:
    _add_ffp_encoder(keys, f"_{suffix}")
  for _, transform in on:
    _add_double_conv(keys, f"{transform}.conv", transform)
  if variant["fusion"] != "add":
    _add_double_conv(keys, "fusion_conv.conv", "fusion_conv")
  if variant["fusion"] == "concat_se":
    for fc in ("fc1", "fc2"):
      _add_conv(keys, f"se.{fc}", ("se", fc), bias=True)   # Linear: weight -> kernel, bias
  _add_ffp_decoder(keys)
  return keys


def key_mapping(*, arch: str = "r3d_18", include_fc: bool = True,
                variant: Mapping | None = None) -> dict[str, tuple[str, tuple[str, ...]]]:
  """Where each state-dict entry goes in the `R3D18` / `ResNet18` / `UNet` / `PatchGAN` / `F2LM`
  variables.

  Args:
    arch: "r3d_18" (`jaxvad.models.r3d.R3D18`), "resnet18" (`jaxvad.models.resnet.ResNet18`),
      "ffp_unet" (`jaxvad.models.unet.UNet`, form "pytorch"), "ffp_patchgan"
      (`jaxvad.models.patchgan.PatchGAN`, form "pytorch") or "f2lm"
      (`jaxvad.models.f2lm.F2LM`).
    include_fc: include `fc.weight` and `fc.bias` (the FFP and F2LM archs have no fc and ignore
      it).
    variant: "f2lm" only: `F2LM`'s `motion`, `labels`, `fusion` (missing entries: the full
      model's, `F2LM_VARIANT`).

  Returns:
    torch key -> (Flax collection, path in it), e.g. "layer2.0.downsample.1.running_var" ->
    ("batch_stats", ("layer2_0", "downsample", "bn", "var")); every key but
    `*.num_batches_tracked`, in `state_dict()` (forward) order.

  Raises:
    ConversionError: an unknown arch, a variant for another arch than "f2lm", or an unknown
      variant entry.
  """
  _check_arch(arch)
  if variant is not None and arch != "f2lm":
    raise ConversionError(f"variant is F2LM's; arch={arch!r} has none")
  if arch not in _TORCHVISION_ARCHS:
    return _ffp_key_mapping(arch, variant)
  keys = {}
  for conv, bn, conv_path, bn_path in _units(arch):
    keys[f"{conv}.weight"] = ("params", conv_path + ("kernel",))
    for leaf, (collection, name) in _BN_LEAVES.items():
      keys[f"{bn}.{leaf}"] = (collection, bn_path + (name,))
  if include_fc:
    keys["fc.weight"] = ("params", ("fc", "kernel"))
    keys["fc.bias"] = ("params", ("fc", "bias"))
  return keys


def torchvision_keys(*, arch: str = "r3d_18", include_fc: bool = True,
                     variant: Mapping | None = None) -> list[str]:
  """The state-dict keys of torchvision's r3d_18 or resnet18 (or of an FFP / F2LM arch's torch
  module).

  Args:
    arch: "r3d_18", "resnet18", "ffp_unet", "ffp_patchgan" or "f2lm".
    include_fc: include `fc.weight` and `fc.bias`.
    variant: as for `key_mapping`.

  Returns:
    The keys of `r3d_18().state_dict()` (`resnet18()`'s, the FFP port's `UNet(12)` /
    `PixelDiscriminator(3)`'s, the F2LM `UNet()`'s) less `*.num_batches_tracked`, in its order.
  """
  return list(key_mapping(arch=arch, include_fc=include_fc, variant=variant))


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):   # a torch tensor; no torch import needed to recognise it
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":   # numpy has no bfloat16
      value = value.float()
    value = value.numpy()
  return np.asarray(value)


def _origin(source: Any) -> str:
  """For error messages: " in 'file.pth'" when reading a file, "" for an in-memory dict."""
  return f" in {os.fspath(source)!r}" if isinstance(source, (str, os.PathLike)) else ""


def _read_state_dict(source: Any, arch: str) -> Mapping[str, Any]:
  if isinstance(source, (str, os.PathLike)):
    try:
      import torch  # pylint: disable=g-import-not-at-top  # only needed for .pth files
    except ImportError as e:
      raise ConversionError(
          f"reading {os.fspath(source)!r} needs PyTorch (torch.load); install a CPU build with "
          "`pip install torch --index-url https://download.pytorch.org/whl/cpu`, or pass a dict "
          "of numpy arrays") from e
    if not os.path.isfile(source):
      raise ConversionError(f"no checkpoint file at {os.fspath(source)!r}")
    # weights_only: a .pth is a pickle; never run arbitrary code from a downloaded file.
    source = torch.load(source, map_location="cpu", weights_only=True)
  if not isinstance(source, Mapping):
    raise ConversionError(f"expected a state dict (a mapping of names to arrays), got "
                          f"{type(source).__name__}")
  entry = _CHECKPOINT_ENTRY.get(arch)
  if entry in source and isinstance(source[entry], Mapping):   # the port's training checkpoint
    source = source[entry]
  return source


def _format_keys(keys) -> str:
  keys = list(keys)
  shown = ", ".join(keys[:20])
  return shown + (f", ... ({len(keys) - 20} more)" if len(keys) > 20 else "")


def _expected_keys(arch: str, given, include_fc: bool = False) -> dict:
  """`key_mapping` of `arch` for a state dict with keys `given` ("f2lm": the variant they name)."""
  variant = _f2lm_variant_of_keys(given) if arch == "f2lm" else None
  return key_mapping(arch=arch, include_fc=include_fc, variant=variant)


def torch_to_flax(state_dict: Any, *, arch: str = "r3d_18", include_fc: bool = True,
                  variant: Mapping | None = None) -> dict[str, dict]:
  """Converts a torchvision `r3d_18` / `resnet18`, FFP port or F2LM state dict to Flax variables.

  Args:
    state_dict: a mapping of torch key -> torch tensor or numpy array, or the path of a
      `.pth` file holding one (read with `torch.load(..., weights_only=True)`); for the FFP
      and F2LM archs also their training checkpoints (the "net_g" / "net_d" entry is read).
    arch: "r3d_18" (default; for `R3D18`), "resnet18" (for `ResNet18`), "ffp_unet" (for
      `UNet()`), "ffp_patchgan" (for `PatchGAN()`) or "f2lm" (for `F2LM()`).
    include_fc: False drops `fc.*` (present or not), for a head with another class count or a
      backbone-only `ResNet18`; the result then has no `fc` and can be merged into initialised
      variables (`load_torch_weights`).
    variant: "f2lm" only: the `F2LM` switches (`motion`, `labels`, `fusion`) the state dict must
      have the modules of; None reads them from its keys.

  Returns:
    `{"params": ..., "batch_stats": ...}`: nested dicts of float32 numpy arrays, for
    `R3D18(width=w, ...)` / `ResNet18(width=w, ...)` / `UNet(width=w, ...)` / `F2LM(width=w,
    ...)` where 64·w is the first conv's channel count in the checkpoint (`PatchGAN(width=w)`:
    128·w). Shapes are not checked against a model here; `load_torch_weights` does that.

  Raises:
    ConversionError: keys missing from or unknown to the arch's layout (all listed), a conv
      or Linear weight of the wrong rank, an unknown arch or variant, or an unreadable file.
  """
  where = _origin(state_dict)
  source = _read_state_dict(state_dict, arch)
  given = {k for k in source if not k.endswith("num_batches_tracked")}
  if arch == "f2lm" and variant is None:
    variant = _f2lm_variant_of_keys(given)
  expected = key_mapping(arch=arch, include_fc=include_fc, variant=variant)
  ignored = set() if include_fc else {"fc.weight", "fc.bias"}
  unknown = sorted(given - expected.keys() - ignored)
  missing = [k for k in expected if k not in given]   # in forward order
  if unknown or missing:
    parts = []
    if missing:
      parts.append(f"missing {len(missing)} key(s): {_format_keys(missing)}")
    if unknown:
      parts.append(f"unknown {len(unknown)} key(s): {_format_keys(unknown)}")
    hint = ""
    if any(k.startswith("module.") for k in unknown):
      hint = " (keys start with 'module.': strip that DataParallel prefix first)"
    for other in ARCHS:   # the right checkpoint for the other model: say which arch to pass
      if other != arch and set(_expected_keys(other, given)) <= given:
        hint = f" (this is a {_SOURCE[other]} state dict: pass arch={other!r})"
    if arch == "f2lm":   # e.g. a full model's checkpoint for an ablation: name both variants
      found, asked = _f2lm_variant_of_keys(given), _f2lm_variant(variant)
      if found != asked and set(_expected_keys(arch, given)) <= given:
        hint = (f" (the checkpoint is an {_describe_f2lm(found)}, not the "
                f"{_describe_f2lm(asked)} asked for)")
    raise ConversionError(f"not a {_SOURCE[arch]} state dict{where}: " + "; ".join(parts)
                          + hint)

  conv_ndim = _CONV_NDIM[arch]
  variables: dict[str, dict] = {"params": {}, "batch_stats": {}}
  for key, (collection, path) in expected.items():
    value = _to_numpy(source[key]).astype(np.float32)
    if key in _LINEAR_WEIGHTS:
      if value.ndim != 2:
        raise ConversionError(f"{key}{where}: expected a Linear weight [out, in], got shape "
                              f"{value.shape}")
      value = value.T                          # Linear [out, in] -> Dense [in, out]
    elif path[-1] == "kernel":
      if value.ndim != conv_ndim:
        layout = ("ConvTranspose2d weight [in, out, H, W]" if path[-2] == "up"
                  else _CONV_LAYOUT[conv_ndim])
        raise ConversionError(f"{key}{where}: expected a {layout}, got shape {value.shape}")
      # O, I, *spatial -> *spatial, I, O (OIDHW -> DHWIO, OIHW -> HWIO). A ConvTranspose2d
      # weight [in, out, H, W] goes the same way to [H, W, out, in], the layout of
      # `transpose_kernel=True` (torch's semantics, so no spatial flip).
      value = value.transpose(*range(2, conv_ndim), 1, 0)
    node = variables[collection]
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = np.ascontiguousarray(value)
  return variables


def _flatten(tree: Mapping, prefix: tuple = ()) -> dict[tuple, Any]:
  flat = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      flat.update(_flatten(v, prefix + (k,)))
    else:
      flat[prefix + (k,)] = v
  return flat


def _unflatten(flat: Mapping[tuple, Any]) -> dict:
  tree: dict = {}
  for path, v in flat.items():
    node = tree
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = v
  return tree


def load_torch_weights(variables: Mapping, state_dict: Any, *, arch: str = "r3d_18",
                       include_fc: bool = True, variant: Mapping | None = None) -> dict[str, dict]:
  """Puts a torchvision r3d_18 / resnet18, FFP port or F2LM state dict into existing variables,
  shape-checked.

  Args:
    variables: `{"params", "batch_stats"}` of the target model (`R3D18` for "r3d_18",
      `ResNet18` for "resnet18", `UNet` for "ffp_unet", `PatchGAN` for "ffp_patchgan", `F2LM`
      for "f2lm"), e.g. `model.init(...)` or `jax.eval_shape(model.init, ...)` (only shapes are
      read from leaves that are replaced).
    state_dict: as for `torch_to_flax`.
    arch: as for `torch_to_flax`.
    include_fc: False keeps the target's `fc`, if it has one (e.g. a per-frame head with C
      partition classes on a Kinetics-400 backbone, or a backbone-only `ResNet18`), and
      ignores the checkpoint's.
    variant: "f2lm": as for `torch_to_flax`; None reads it from `variables` (the modules the
      model has), so a checkpoint with encoders the model lacks fails as unknown keys.

  Returns:
    New variables: the target's, with every converted leaf replaced (float32 numpy arrays).

  Raises:
    ConversionError: as `torch_to_flax`; or leaves whose shapes differ (e.g. another `width`, or
      another class count with `include_fc=True`), or that one side lacks — all listed.
  """
  where = _origin(state_dict)
  if arch == "f2lm" and variant is None:
    variant = _f2lm_variant_of_variables(variables)
  converted = _flatten(torch_to_flax(state_dict, arch=arch, include_fc=include_fc,
                                     variant=variant))
  target = _flatten({c: dict(variables[c]) for c in ("params", "batch_stats") if c in variables})
  keep = {p for p in target if not include_fc and p[:2] == ("params", "fc")}
  problems = []
  # Lists follow the converter's order (forward order, params before batch_stats): a target's
  # own order may be sorted (jax.eval_shape) and would put fc and layer* before the stem.
  absent = [p for p in converted if p not in target]
  uncovered = [p for p in target if p not in converted and p not in keep]
  if absent:
    problems.append("not in the model: " + _format_keys("/".join(p) for p in absent))
    if all(p[:2] == ("params", "fc") for p in absent):
      problems.append("the model has no fc: pass include_fc=False")
  if uncovered:
    problems.append("not in the checkpoint: " + _format_keys("/".join(p) for p in uncovered))
  mismatched = [p for p in converted
                if p in target and tuple(converted[p].shape) != tuple(target[p].shape)]
  if mismatched:
    first_conv, base = _FIRST_CONV[arch]   # e.g. ("stem", "conv"), 64 channels at width 1
    first = ("params",) + first_conv + ("kernel",)
    if first in mismatched:   # the usual causes: another width or input; say so before leaves
      (ci, c), (ti, t) = converted[first].shape[-2:], target[first].shape[-2:]
      if c != t:
        problems.append(f"the checkpoint has width {c / base:g} ({c} {first_conv[0]} channels), "
                        f"the model {t / base:g} ({t})")
      if ci != ti:   # e.g. an FFP generator for 4 RGB frames (12) vs one for gray frames (4)
        problems.append(f"the checkpoint takes {ci} input channels, the model {ti}")
    elif all(p[:2] == ("params", "fc") for p in mismatched):
      problems.append("another class count: pass include_fc=False to keep the model's fc")
    for path, what in _OTHER_INPUT_CONVS.get(arch, ()):
      kernel = ("params",) + path + ("kernel",)
      if kernel in mismatched and converted[kernel].shape[-2] != target[kernel].shape[-2]:
        # e.g. F2LM's label encoder: 4 frames x K classes (the official 84: K = 21, VOC)
        problems.append(f"the checkpoint's {what} takes {converted[kernel].shape[-2]} input "
                        f"channels, the model's {target[kernel].shape[-2]}")
    problems.append("shape (checkpoint vs model): " + _format_keys(
        f"{'/'.join(p)} {tuple(converted[p].shape)} vs {tuple(target[p].shape)}"
        for p in mismatched))
  if problems:
    raise ConversionError(f"checkpoint{where} does not fit the model: " + "; ".join(problems))
  return _unflatten({**target, **converted})
