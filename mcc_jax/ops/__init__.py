"""Sampling and coordinate ops that reproduce the official PyTorch code's numerics."""
from mcc_jax.ops.antialias import antialias_downsample, antialias_kernel, antialias_kernel_size
from mcc_jax.ops.coordinates import kp2gaussian, linspace_grid_float32, make_coordinate_grid, torch_linspace_float32
from mcc_jax.ops.sampling import grid_sample, resize_bilinear, upsample_nearest2x
