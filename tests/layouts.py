"""Small helpers of the PyTorch parity tests (no torch import: duck-typed tensors)."""

import numpy as np


def channels_last(t) -> np.ndarray:
  """A torch tensor with channels second (NCHW, NCDHW) -> numpy, channels last (NHWC, NDHWC)."""
  a = t.detach().numpy()
  return a.transpose(0, *range(2, a.ndim), 1)


def leaf(tree, path) -> np.ndarray:
  """The array at `path` (a sequence of keys) of a nested dict."""
  for name in path:
    tree = tree[name]
  return np.asarray(tree)
