"""Shared pieces of the PyTorch baselines: frame conversion, scores and losses as jaxvad's, and
Flax -> torch weight copies.

Frames arrive as jaxvad's batches do, channels-last uint8 `[B, T, H, W, C]` tensors; the
models take NCHW / NCDHW tensors whose memory is channels-last, which a permute of the
channels-last batch gives without a copy.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["channels", "configure", "device_of", "constant", "to_float", "psnr", "ssim_map",
           "ssim", "gradient_loss", "prediction_loss", "conv_weight", "conv_transpose_weight",
           "copy_", "load_named_modules", "state_dict_from_flax"]


def channels(base: int, width: float) -> int:
  """`base · width` rounded, at least 1 (jaxvad's `stage_features`, torchvision at width 1)."""
  return max(1, int(round(base * width)))


def configure(device: str | torch.device = "cpu") -> None:
  """What a PyTorch user sets before a benchmark: `cudnn.benchmark` on GPU (autotuned convs).

  Args:
    device: the device the models run on; nothing changes for "cpu".
  """
  if torch.device(device).type == "cuda":
    torch.backends.cudnn.benchmark = True


def device_of(model: nn.Module) -> torch.device:
  """The device of the model's first parameter."""
  return next(model.parameters()).device


@functools.lru_cache(maxsize=None)
def _constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
  # Never an inference tensor (the first call may come from `score`'s inference_mode): a cached
  # one would then fail in a later training step's autograd.
  with torch.inference_mode(False):
    return torch.tensor(values, dtype=torch.float32, device=device)


@torch.compiler.disable  # dynamo mis-guards tensors made from module-level numpy arrays
def constant(values: Any, device: torch.device) -> torch.Tensor:
  """A float32 tensor of constants on `device`, made once per device (no copy per step)."""
  return _constant(tuple(float(v) for v in np.atleast_1d(np.asarray(values, np.float32))),
                   torch.device(device))


def to_float(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
  """uint8 frames -> float32 in [0, 1] on `device` (moved as uint8: a quarter of the bytes)."""
  return frames.to(device, non_blocking=True).float() / 255.0


def psnr(a: torch.Tensor, b: torch.Tensor, *, dims, eps: float = 1e-10) -> torch.Tensor:
  """`10 log10(1 / max(MSE, eps))` over `dims`, frames in [0, 1] (`jaxvad.scoring.psnr`)."""
  mse = torch.mean((a.float() - b.float()) ** 2, dim=dims)
  return 10.0 * torch.log10(1.0 / mse.clamp_min(eps))


def _gaussian_taps(sigma: float, win_size: int) -> np.ndarray:
  # As jaxvad.scoring: computed in float64, normalised, then used in float32.
  r = (win_size - 1) // 2
  k = np.arange(-r, r + 1, dtype=np.float64)
  taps = np.exp(-0.5 * (k / sigma) ** 2)
  return (taps / taps.sum()).astype(np.float32)


def ssim_map(pred: torch.Tensor, target: torch.Tensor, *, sigma: float = 1.5,
             win_size: int = 11, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
  """The SSIM map of every frame pair over its interior pixels, frames `[N, C, H, W]` in [0, 1].

  The separable Gaussian window runs as two grouped 'valid' convs (as pytorch_msssim), so the
  map covers exactly the interior pixels, `(win_size - 1) // 2` from every border, that
  jaxvad keeps of its reflect-padded full-size map (`jaxvad.scoring.ssim` crops them before
  averaging, `patch_scores` averages only them): the border values it computes and drops are
  never needed here, so no padding is either.

  The variances are the usual `E[x^2] - E[x]^2`, of frames shifted by their mean first (the
  variances do not change): unshifted, that difference cancels in flat frames, where the
  variance is far below C2, and the mean SSIM of a nearly flat frame was 9e-5 off jaxvad's
  (which centres its moments exactly; see `jaxvad.scoring._local_stats`).

  Returns:
    float32 `[N, C, H - 2r, W - 2r]`, r = `(win_size - 1) // 2`, one map per channel.
  """
  x, y = pred.float(), target.float()
  c = x.shape[1]
  shift = 0.5 * (x.mean(dim=(2, 3), keepdim=True) + y.mean(dim=(2, 3), keepdim=True))
  x, y = x - shift, y - shift
  taps = constant(_gaussian_taps(sigma, win_size), x.device)
  # The five moments of all channels through one grouped conv per axis.
  stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
  rows = taps.view(1, 1, 1, -1).expand(5 * c, 1, 1, win_size)
  stacked = F.conv2d(stacked, rows, groups=5 * c)
  stacked = F.conv2d(stacked, rows.transpose(2, 3), groups=5 * c)
  mu_x, mu_y, e_xx, e_yy, e_xy = stacked.split(c, dim=1)
  var_sum = e_xx + e_yy - mu_x * mu_x - mu_y * mu_y
  cov = e_xy - mu_x * mu_y
  mu_x, mu_y = mu_x + shift, mu_y + shift
  c1, c2 = k1 ** 2, k2 ** 2   # max_val 1
  return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
          / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_sum + c2)))


def ssim(pred: torch.Tensor, target: torch.Tensor, *, sigma: float = 1.5, win_size: int = 11,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
  """Mean SSIM of every frame pair, frames `[N, C, H, W]` in [0, 1] (`jaxvad.scoring.ssim`):
  `ssim_map` averaged.

  Returns:
    float32 `[N]`: the mean over the interior pixels and the channels of each frame.
  """
  return ssim_map(pred, target, sigma=sigma, win_size=win_size, k1=k1,
                  k2=k2).mean(dim=(1, 2, 3))


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
  """FFP's gradient difference loss with alpha 1 (`jaxvad.losses.gradient_loss`), `[N, C, H, W]`.

  `mean(| |dx pred| - |dx target| |) + mean(| |dy pred| - |dy target| |)` over the pairs of
  neighbouring pixels inside the frame.
  """
  def edge(dim):
    return torch.mean(torch.abs(torch.diff(pred, dim=dim).abs()
                                - torch.diff(target, dim=dim).abs()))
  return edge(3) + edge(2)


def prediction_loss(pred: torch.Tensor, target: torch.Tensor,
                    weights=(0.6, 0.25, 0.15)) -> torch.Tensor:
  """Paper 001 eq. 3.1: a·MSE + b·gradient + c·(1 - SSIM), frames `[N, C, H, W]` in [0, 1].

  As `jaxvad.methods.predictive_ae.prediction_loss`; computed in float32.
  """
  pred, target = pred.float(), target.float()
  a, b, c = weights
  return (a * F.mse_loss(pred, target) + b * gradient_loss(pred, target)
          + c * (1.0 - ssim(pred, target).mean()))


# ------------------------------------------------------------------ Flax -> torch weights


def _np(x: Any) -> np.ndarray:
  return np.array(x, dtype=np.float32)   # a writable copy (jax arrays read as read-only)


def conv_weight(kernel: Any) -> torch.Tensor:
  """Flax `nn.Conv` kernel `[*k, in, out]` -> torch `[out, in, *k]`."""
  k = _np(kernel)
  return torch.from_numpy(np.ascontiguousarray(k.transpose(k.ndim - 1, k.ndim - 2,
                                                           *range(k.ndim - 2))))


def conv_transpose_weight(kernel: Any, *, transpose_kernel: bool) -> torch.Tensor:
  """Flax `nn.ConvTranspose` kernel -> torch `ConvTranspose2d` weight `[in, out, kh, kw]`.

  With `transpose_kernel=True` Flax stores `[kh, kw, out, in]`, torch's weight transposed; with
  the default False it stores `[kh, kw, in, out]` and correlates the dilated input with it
  unflipped, where torch flips: the taps are reversed in both spatial axes.
  """
  k = _np(kernel)
  if transpose_kernel:
    k = k.transpose(3, 2, 0, 1)
  else:
    k = k[::-1, ::-1].transpose(2, 3, 0, 1)
  return torch.from_numpy(np.ascontiguousarray(k))


def copy_(dst: torch.Tensor, src: Any) -> None:
  """`dst <- src` (numpy / jax / torch), shape-checked; keeps dst's memory format."""
  src = src if isinstance(src, torch.Tensor) else torch.from_numpy(_np(src))
  if tuple(dst.shape) != tuple(src.shape):
    raise ValueError(f"shape mismatch: torch {tuple(dst.shape)} vs flax {tuple(src.shape)}")
  with torch.no_grad():
    dst.copy_(src)


def _node(tree: Mapping, path) -> Any:
  for name in path:
    tree = tree[name]
  return tree


def load_named_modules(module: nn.Module, variables: Mapping, *, flax_path=(), prefix: str = "",
                       transpose_kernel: bool = False, skip=()) -> list[str]:
  """Copies Flax variables into the convs, transposed convs and BNs under `module` whose torch
  names are the Flax paths (`decoder.up0` <-> params/decoder/up0).

  Args:
    module: the torch module.
    variables: `{"params": ..., "batch_stats": ...}` (batch_stats only where there is BN).
    flax_path: the Flax path of `module` itself.
    prefix: torch names below `module` start with it ("" = all).
    transpose_kernel: how the Flax `ConvTranspose` layers were built.
    skip: torch name prefixes left alone (e.g. a submodule loaded another way).

  Returns:
    The torch names of the modules loaded.
  """
  loaded = []
  for name, sub in module.named_modules():
    if not name.startswith(prefix) or any(name.startswith(s) for s in skip) or not name:
      continue
    path = tuple(flax_path) + tuple(name.split("."))
    if isinstance(sub, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
      p = _node(variables["params"], path)
      copy_(sub.weight, conv_transpose_weight(p["kernel"], transpose_kernel=transpose_kernel))
    elif isinstance(sub, (nn.Conv2d, nn.Conv3d)):
      p = _node(variables["params"], path)
      copy_(sub.weight, conv_weight(p["kernel"]))
    elif isinstance(sub, nn.Linear):
      p = _node(variables["params"], path)
      copy_(sub.weight, _np(p["kernel"]).T)
    elif isinstance(sub, nn.modules.batchnorm._BatchNorm):
      p, s = _node(variables["params"], path), _node(variables["batch_stats"], path)
      copy_(sub.weight, p["scale"])
      copy_(sub.running_mean, s["mean"])
      copy_(sub.running_var, s["var"])
    else:
      continue
    if getattr(sub, "bias", None) is not None:
      copy_(sub.bias, p["bias"])
    loaded.append(name)
  return loaded


def state_dict_from_flax(variables: Mapping, *, arch: str, include_fc: bool = True,
                         flax_path=()) -> dict[str, torch.Tensor]:
  """The inverse of `jaxvad.models.convert_torch.torch_to_flax`: a torchvision-layout state dict.

  The key mapping is the converter's own (`convert_torch.key_mapping`), so the two directions
  cannot drift apart.

  Args:
    variables: `{"params", "batch_stats"}` of an `R3D18` ("r3d_18") or `ResNet18` ("resnet18").
    arch: "r3d_18" or "resnet18".
    include_fc: include `fc.weight` / `fc.bias`.
    flax_path: where the model sits in `variables` (e.g. ("encoder",)).

  Returns:
    torch key -> float32 tensor, without `num_batches_tracked`.
  """
  from jaxvad.models import convert_torch  # pylint: disable=g-import-not-at-top

  out = {}
  for key, (collection, path) in convert_torch.key_mapping(arch=arch,
                                                           include_fc=include_fc).items():
    value = _np(_node(variables[collection], tuple(flax_path) + path))
    if key == "fc.weight":
      out[key] = torch.from_numpy(np.ascontiguousarray(value.T))
    elif path[-1] == "kernel":
      out[key] = conv_weight(value)
    else:
      out[key] = torch.from_numpy(np.ascontiguousarray(value))
  return out


def load_resnet18_from_flax(module: torch.nn.Module, variables: Mapping, *,
                            flax_path: tuple[str, ...], name: str) -> None:
  """Loads a Flax ResNet-18 subtree (no fc head) into a torchvision-layout resnet18 module.

  Args:
    module: the torch module (a torchvision-layout resnet18 without fc).
    variables: the Flax variables holding the subtree at `flax_path`.
    flax_path: where the ResNet sits in the Flax params (e.g. ("backbone",)).
    name: what the module is, for the error.

  Raises:
    ValueError: the state dict does not fit the module.
  """
  sd = state_dict_from_flax(variables, arch="resnet18", include_fc=False, flax_path=flax_path)
  missing, unexpected = module.load_state_dict(sd, strict=False)
  missing = [k for k in missing if not k.endswith("num_batches_tracked")]
  if missing or unexpected:
    raise ValueError(f"{name} state dict does not fit: missing {missing}, unexpected "
                     f"{unexpected}")
