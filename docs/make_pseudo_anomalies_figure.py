"""Renders docs/images/pseudo_anomalies.png: jaxvad.pseudo_anomalies on synthetic frames.

Rows are frames of one normal pick-and-place clip of the synthetic benchmark; columns are the
original and its cutpaste, scar and cropliq versions, each defect's mask outlined in red. The
object's box (the arm's pixels of the clip's class map, standing in for paper 002's
YOLO-OBB detection) is outlined in yellow; all three kinds stay inside it.

  python docs/make_pseudo_anomalies_figure.py [--seed 0] [--out docs/images/pseudo_anomalies.png]
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from jaxvad import pseudo_anomalies  # noqa: E402
from jaxvad.data import synth  # noqa: E402

_FRAMES = (5, 10, 20)
_OBJECT = ("arm",)
_PAD = 3  # px around the object's pixels


def object_box(classes):
  """(x0, y0, x1, y1), half-open, of the arm's pixels in a class map, padded."""
  ids = [synth.SEMANTIC_CLASSES.index(name) for name in _OBJECT]
  ys, xs = np.nonzero(np.isin(classes, ids))
  h, w = classes.shape
  return (max(int(xs.min()) - _PAD, 0), max(int(ys.min()) - _PAD, 0),
          min(int(xs.max()) + 1 + _PAD, w), min(int(ys.max()) + 1 + _PAD, h))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", type=pathlib.Path,
                      default=pathlib.Path(__file__).parent / "images" / "pseudo_anomalies.png")
  args = parser.parse_args()
  clip = synth.render_clip("pickplace", num_cycles=1, size=(128, 128), seed=args.seed)
  rng = np.random.default_rng(args.seed)
  columns = ("original",) + pseudo_anomalies.KINDS
  fig, axes = plt.subplots(len(_FRAMES), len(columns), figsize=(2 * len(columns),
                                                                  2 * len(_FRAMES)))
  for row, t in enumerate(_FRAMES):
    frame = clip.frames[t]
    x0, y0, x1, y1 = box = object_box(clip.classes[t])
    for col, kind in enumerate(columns):
      ax = axes[row, col]
      if kind == "original":
        ax.imshow(frame)
      else:
        image, mask = pseudo_anomalies.apply(kind, frame, rng, box=box)
        ax.imshow(image)
        ax.contour(mask, levels=[0.5], colors="red", linewidths=0.8)  # mask is never empty
      ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                 edgecolor="yellow", linewidth=0.8))
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(kind, fontsize=10)
    axes[row, 0].set_ylabel(f"frame {t}", fontsize=9)
  fig.tight_layout()
  args.out.parent.mkdir(parents=True, exist_ok=True)
  fig.set_dpi(80)
  fig.canvas.draw()
  # A 256-colour palette: the frames' sensor noise makes a full-colour PNG 3x larger.
  rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
  rgb.quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
  plt.close(fig)
  print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
  main()
