"""jaxvad_kernels: Numba kernels for the CPU-side work (DTW, cycle partition labels, SSIM/PSNR patch scoring).

Installed under the import name ``jaxvad_kernels`` (``kernels`` belongs to another PyPI package).
Each kernel is a private ``@njit`` core behind a public wrapper that validates its input.
"""

from jaxvad_kernels.dtw import dtw_align_batch, dtw_distance, dtw_path, path_to_index
from jaxvad_kernels.image_scores import (mse, moving_average, patch_scores, psnr, ssim,
                                         ssim_map)
from jaxvad_kernels.partition import (PartitionLabels, cycle_phase, cycle_template,
                                      estimate_period, frame_signal, one_hot,
                                      partition_labels, partition_order_labels,
                                      smoothed_labels)

__all__ = [
    # dtw
    "dtw_distance", "dtw_path", "dtw_align_batch", "path_to_index",
    # partition
    "frame_signal", "estimate_period", "cycle_template", "cycle_phase", "partition_labels",
    "one_hot", "smoothed_labels", "PartitionLabels", "partition_order_labels",
    # image_scores
    "ssim", "ssim_map", "mse", "psnr", "patch_scores", "moving_average",
]
