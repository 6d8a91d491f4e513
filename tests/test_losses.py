import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads
from jaxvad_kernels import image_scores as kernels

from jaxvad import losses
from tests.naive import losses as naive


def _pair(shape, seed):
  rng = np.random.default_rng(seed)
  target = rng.random(shape).astype(np.float32)
  pred = np.clip(target + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
  return pred, target


def _kink_free_pair(shape, seed):
  """pred, target whose every |neighbour difference|, its mismatch and pred - target stay
  >= 0.02 from zero, so finite differences (eps 1e-3) never straddle a kink of abs."""
  rng = np.random.default_rng(seed)
  i, j = np.indices(shape[-3:-1])[..., None]
  target = 0.1 * i + 0.2 * j + 0.01 * rng.random(shape)    # |dy| ~ 0.1, |dx| ~ 0.2
  pred = 0.25 * i + 0.05 * j + 0.01 * rng.random(shape)     # |dy| ~ 0.25, |dx| ~ 0.05
  return (pred / 2).astype(np.float32), (target / 2 + 0.63).astype(np.float32)


@pytest.mark.parametrize("use_jit", [False, True])
def test_losses_match_naive_references(use_jit):
  pred, target = _pair((2, 3, 9, 8, 2), seed=0)
  logits = np.random.default_rng(1).normal(size=(2, 5, 4)).astype(np.float32)
  labels = np.random.default_rng(2).dirichlet(np.ones(4), size=(2, 5)).astype(np.float32)

  def all_losses(pred, target, logits, labels):
    return ([losses.intensity_loss(pred, target, p=p) for p in (1, 2, 1.5)]
            + [losses.gradient_loss(pred, target, alpha=a) for a in (1, 2)]
            + [losses.soft_label_cross_entropy(logits, labels)])

  got = (jax.jit(all_losses) if use_jit else all_losses)(pred, target, logits, labels)
  want = ([naive.intensity_loss(pred, target, p=p) for p in (1, 2, 1.5)]
          + [naive.gradient_loss(pred, target, alpha=a) for a in (1, 2)]
          + [naive.soft_label_cross_entropy(logits, labels)])
  for g, w in zip(got, want):
    assert g.shape == () and g.dtype == jnp.float32
    np.testing.assert_allclose(float(g), w, rtol=2e-5)


def test_masked_ssim_loss_is_one_minus_mean_kernel_ssim():
  # Jitted only: ssim_loss adds one mean to scoring.ssim, which test_scoring runs eagerly too.
  pred, target = _pair((4, 24, 21, 1), seed=3)
  mask = np.random.default_rng(4).random((4, 24, 21)) > 0.2
  got = jax.jit(lambda p, t, m: losses.ssim_loss(p, t, mask=m))(pred, target, mask)
  want = 1 - kernels.ssim(pred.astype(np.float64), target.astype(np.float64), max_val=1.0,
                          mask=mask).mean()
  np.testing.assert_allclose(float(got), want, rtol=0, atol=1e-5)


def test_identical_inputs_give_zero_loss_and_finite_gradients():
  target = np.random.default_rng(5).random((2, 12, 12, 3)).astype(np.float32)
  target[0, :6] = 0.5  # a flat region: zero local variance, where SSIM leans on C2
  smooth = lambda x: losses.intensity_loss(x, target) + losses.ssim_loss(x, target)
  kinked = lambda x: losses.intensity_loss(x, target, p=1) + losses.gradient_loss(x, target)
  for fn in (smooth, kinked):
    loss, grad = jax.jit(jax.value_and_grad(fn))(target)
    assert abs(float(loss)) < 1e-6 and np.isfinite(np.asarray(grad)).all()
    if fn is smooth:  # a minimum: no descent direction
      np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-6)
    # (The L1-type losses take a subgradient of abs at 0, which need not be zero.)


_GRAD_MASK = np.ones((11, 12), np.float32)
_GRAD_MASK[4:7, 3:9] = 0.0
_GRAD_CASES = {  # name: (loss of (pred, target), check_grads modes)
    "intensity": (lambda p, t: (losses.intensity_loss(p, t) + losses.intensity_loss(p, t, p=1)
                                + losses.intensity_loss(p, t, p=1.5)), ("fwd", "rev")),
    "gradient": (lambda p, t: losses.gradient_loss(p, t) + losses.gradient_loss(p, t, alpha=2),
                 ("fwd", "rev")),
    # A mask, a non-default window and range (so the tangents of C1, C2 count). Reverse mode
    # only: it is the transpose of the same JVP rule, and compiling the forward-mode SSIM
    # (whose tangent filter is the slow sum-of-pads form) costs ~2 s.
    "ssim": (lambda p, t: losses.ssim_loss(p, t, mask=_GRAD_MASK, win_size=5, max_val=1.2),
             ("rev",)),
    "soft_ce": (lambda p, t: losses.soft_label_cross_entropy(p, jax.nn.softmax(t)),
                ("fwd", "rev")),
}


@pytest.mark.parametrize("name", list(_GRAD_CASES))
def test_gradients_match_finite_differences(name):
  pred, target = _kink_free_pair((2, 11, 12, 2), seed=6)
  fn, modes = _GRAD_CASES[name]
  # jit: one compile per mode instead of op-by-op dispatch; float32, so a wide eps.
  check_grads(jax.jit(fn), (pred, target), order=1, modes=modes, eps=1e-3, atol=5e-3, rtol=5e-3)


def test_soft_label_cross_entropy_by_hand_and_one_hot():
  # softmax([0, log 3]) = [1/4, 3/4]; labels [1/2, 1/2]: -(log(1/4) + log(3/4)) / 2.
  logits = np.array([[0.0, np.log(3.0)], [0.0, 0.0]], np.float32)
  labels = np.array([[0.5, 0.5], [0.3, 0.7]], np.float32)
  want = (-(np.log(0.25) + np.log(0.75)) / 2 + np.log(2.0)) / 2
  np.testing.assert_allclose(float(losses.soft_label_cross_entropy(logits, labels)), want,
                             rtol=1e-6)
  rng = np.random.default_rng(7)
  logits = rng.normal(size=(3, 4, 5)).astype(np.float32) * 3
  classes = rng.integers(0, 5, size=(3, 4))
  one_hot = np.eye(5, dtype=np.float32)[classes]
  want = optax.softmax_cross_entropy_with_integer_labels(logits, classes).mean()
  np.testing.assert_allclose(float(losses.soft_label_cross_entropy(logits, one_hot)),
                             float(want), rtol=1e-6)


def test_losses_reject_bad_input():
  a = np.zeros((2, 12, 12, 1), np.float32)
  for fn in (losses.intensity_loss, losses.gradient_loss, losses.ssim_loss):
    with pytest.raises(ValueError, match="shapes differ"):
      fn(a, a[:, :, :11])
    with pytest.raises(ValueError, match="H, W, C"):
      fn(a[0, 0], a[0, 0])
  with pytest.raises(ValueError, match="p must be"):
    losses.intensity_loss(a, a, p=0)
  with pytest.raises(ValueError, match="alpha must be"):
    losses.gradient_loss(a, a, alpha=-1)
  with pytest.raises(ValueError, match="H, W >= 2"):
    losses.gradient_loss(a[:, :1], a[:, :1])
  with pytest.raises(ValueError, match="positive odd"):
    losses.ssim_loss(a, a, win_size=6)
  with pytest.raises(ValueError, match="exceeds the frame"):
    losses.ssim_loss(a, a, win_size=13)
  with pytest.raises(ValueError, match="shapes differ"):
    losses.soft_label_cross_entropy(np.zeros((4, 3)), np.zeros((4, 2)))
  with pytest.raises(ValueError, match="shapes differ"):  # static checks fire under jit
    jax.jit(losses.gradient_loss)(a, a[:, :, :11])


# --------------------------------------------------------------------------- Horn-Schunck flow


def _blob(h, w, cx, cy):
  y, x = np.mgrid[0:h, 0:w]
  return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 18.0)[..., None] * np.ones(3)


def test_horn_schunck_matches_the_pixel_by_pixel_reference():
  rng = np.random.default_rng(0)
  a, b = rng.uniform(-1, 1, (2, 9, 11, 3))
  got = losses.horn_schunck(a, b, alpha=0.5, iterations=7)
  np.testing.assert_allclose(got, naive.horn_schunck(a, b, alpha=0.5, iterations=7),
                             rtol=2e-4, atol=2e-5)
  # Leading axes: a batch gives each pair's flow.
  batch = losses.horn_schunck(np.stack([a, b]), np.stack([b, a]), alpha=0.5, iterations=7)
  np.testing.assert_allclose(batch[0], got, rtol=1e-5, atol=1e-6)


def test_horn_schunck_finds_a_shift_and_flow_loss_has_gradients():
  first, moved = _blob(24, 24, 11, 12), _blob(24, 24, 12, 12)   # one pixel to the right
  flow = np.asarray(losses.horn_schunck(first, moved, alpha=0.1, iterations=200))
  centre = flow[8:16, 8:16]
  assert 0.5 < centre[..., 0].mean() < 1.5 and abs(centre[..., 1].mean()) < 0.1
  assert losses.flow_loss(first, moved, moved) == 0
  grad = jax.grad(lambda p: losses.flow_loss(first, p, moved, alpha=0.1, iterations=10))(
      jnp.asarray(first, jnp.float32))
  assert np.isfinite(grad).all() and np.abs(grad).max() > 0
  with pytest.raises(ValueError, match="alpha must be > 0"):
    losses.horn_schunck(first, moved, alpha=0)
