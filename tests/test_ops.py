"""Parity of `mcc_jax.ops` with torch's sampling ops and with plain-loop references."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcc_jax.ops import (antialias_downsample, antialias_kernel, antialias_kernel_size, grid_sample, kp2gaussian,
                         make_coordinate_grid, resize_bilinear, torch_linspace_float32, upsample_nearest2x)

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
ALIGN = pytest.mark.parametrize("align_corners", [True, False])
PADDING = pytest.mark.parametrize("padding_mode", ["zeros", "reflection"])


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
  """The test's float dtype; float64 runs with jax x64 enabled."""
  with jax.enable_x64(request.param == "float64"):
    yield np.dtype(request.param)


def _assert_close(got, want, dtype):
  got = np.asarray(got)
  assert got.dtype == dtype
  np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])


def _torch():
  return pytest.importorskip("torch")


def _nchw(x):
  return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def _nhwc(x):
  return np.transpose(x, (0, 2, 3, 1))


def _torch_grid_sample(image, grid, align_corners, padding_mode):
  """torch's bilinear F.grid_sample on NHWC numpy arrays, returned NHWC."""
  torch = _torch()
  want = torch.nn.functional.grid_sample(torch.from_numpy(_nchw(image)), torch.from_numpy(grid), mode="bilinear",
                                         padding_mode=padding_mode, align_corners=align_corners)
  return _nhwc(want.numpy())


def _sample_grid(rng, batch, height, width, dtype, border=True):
  """Uniform grid in [-1.6, 1.6]; with `border`, its first row holds exact border and far-outside points."""
  grid = rng.uniform(-1.6, 1.6, (batch, height, width, 2))
  if border:
    grid[:, 0, :, 0] = np.resize([-1.0, 1.0, 0.0, -1.6, 1.6, 3.3, -1.0, 1.0], width)
    grid[:, 0, :, 1] = np.resize([-1.0, 1.0, -1.0, 1.0, -2.7, 0.0, 1.6, -1.6], width)
  return grid.astype(dtype)


# Plain-loop references.

def _ref_source_index(coord, size, align_corners, padding_mode):
  if align_corners:
    coord = (coord + 1) / 2 * (size - 1)
  else:
    coord = ((coord + 1) * size - 1) / 2
  if padding_mode == "reflection":
    low, high = (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)
    if low == high:
      coord = low
    while coord < low or coord > high:
      coord = 2 * low - coord if coord < low else 2 * high - coord
    coord = min(max(coord, 0.0), size - 1.0)
  return coord


def _ref_grid_sample(image, grid, align_corners, padding_mode):
  """torch's bilinear grid_sample, one output pixel and one tap at a time, in float64."""
  image = image.astype(np.float64)
  _, height, width, channels = image.shape
  out = np.zeros(grid.shape[:3] + (channels,))
  for n, i, j in np.ndindex(*grid.shape[:3]):
    x = _ref_source_index(float(grid[n, i, j, 0]), width, align_corners, padding_mode)
    y = _ref_source_index(float(grid[n, i, j, 1]), height, align_corners, padding_mode)
    x0, y0 = math.floor(x), math.floor(y)
    for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
      if 0 <= xi < width and 0 <= yi < height:
        out[n, i, j] += (1 - abs(x - xi)) * (1 - abs(y - yi)) * image[n, yi, xi]
  return out


def _ref_resize_taps(in_size, out_size, align_corners):
  taps = []
  for o in range(out_size):
    if align_corners:
      src = o * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    else:
      src = max((o + 0.5) * in_size / out_size - 0.5, 0.0)
    lo = min(math.floor(src), in_size - 1)
    taps.append(((lo, 1 - (src - lo)), (min(lo + 1, in_size - 1), src - lo)))
  return taps


def _ref_resize(x, height, width, align_corners):
  """torch's bilinear upsample_bilinear2d, one output pixel at a time, in float64."""
  x = x.astype(np.float64)
  rows = _ref_resize_taps(x.shape[1], height, align_corners)
  cols = _ref_resize_taps(x.shape[2], width, align_corners)
  out = np.zeros((x.shape[0], height, width, x.shape[3]))
  for i, j in np.ndindex(height, width):
    for r, wr in rows[i]:
      for c, wc in cols[j]:
        out[:, i, j] += wr * wc * x[:, r, c]
  return out


def _ref_gaussian_kernel(scale):
  sigma = (1 / scale - 1) / 2
  size = 2 * round(4 * sigma) + 1
  one_d = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
  kernel = np.outer(one_d, one_d)
  return kernel / kernel.sum()


def _ref_antialias(x, kernel, scale):
  """Zero-pad, depthwise correlate with the 2-D `kernel` and keep every 1/scale-th pixel, in float64."""
  size = kernel.shape[0]
  ka = size // 2
  kb = ka - 1 if size % 2 == 0 else ka
  stride = int(1 / scale)
  padded = np.pad(x.astype(np.float64), ((0, 0), (ka, kb), (ka, kb), (0, 0)))
  out_h, out_w = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
  out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
  for i, j in np.ndindex(out_h, out_w):
    window = padded[:, i * stride:i * stride + size, j * stride:j * stride + size]
    out[:, i, j] = np.einsum("bhwc,hw->bc", window, kernel)
  return out


# grid_sample.

@ALIGN
@PADDING
@pytest.mark.parametrize("image_hw,grid_hw", [((5, 7), (4, 6)), ((6, 6), (3, 8)), ((1, 4), (2, 3))])
def test_grid_sample_matches_loop_reference(dtype, align_corners, padding_mode, image_hw, grid_hw):
  """grid_sample equals the plain-loop bilinear reference, border and far-outside points included."""
  rng = np.random.default_rng(0)
  image = rng.uniform(-1, 1, (2, *image_hw, 3)).astype(dtype)
  grid = _sample_grid(rng, 2, *grid_hw, dtype)
  got = grid_sample(jnp.asarray(image), jnp.asarray(grid), align_corners=align_corners, padding_mode=padding_mode)
  _assert_close(got, _ref_grid_sample(image, grid, align_corners, padding_mode), dtype)


@ALIGN
@pytest.mark.parametrize("size", [41, 42, 49, 50, 64])
def test_grid_sample_reflection_fold_points(dtype, align_corners, size):
  """Reflection at exact fold points (x, y = +-1, +-3, ...) picks the pixel torch picks, for many sizes."""
  rng = np.random.default_rng(14)
  image = rng.uniform(-1, 1, (1, size, size, 2)).astype(dtype)
  folds = np.array([s * (2 * k - 1) for k in range(1, 6) for s in (1, -1)], dtype)
  grid = np.stack(np.meshgrid(folds, folds[::-1], indexing="xy"), axis=-1)[None].astype(dtype)
  got = grid_sample(jnp.asarray(image), jnp.asarray(grid), align_corners=align_corners, padding_mode="reflection")
  _assert_close(got, _ref_grid_sample(image, grid, align_corners, "reflection"), dtype)


@ALIGN
@PADDING
def test_loop_reference_matches_torch(align_corners, padding_mode):
  """The loop reference itself agrees with torch, so the always-on tests check torch's semantics."""
  rng = np.random.default_rng(1)
  image = rng.uniform(-1, 1, (2, 5, 7, 3))
  grid = _sample_grid(rng, 2, 4, 6, np.float64)
  want = _torch_grid_sample(image, grid, align_corners, padding_mode)
  np.testing.assert_allclose(_ref_grid_sample(image, grid, align_corners, padding_mode), want,
                             rtol=1e-12, atol=1e-12)


@ALIGN
@PADDING
@pytest.mark.parametrize("image_hw,grid_hw", [((16, 16), (16, 16)), ((9, 23), (12, 5)), ((41, 42), (7, 31)),
                                              ((1, 6), (4, 4))])
def test_grid_sample_matches_torch(dtype, align_corners, padding_mode, image_hw, grid_hw):
  """grid_sample equals torch's F.grid_sample (bilinear) on random images and grids."""
  rng = np.random.default_rng(2)
  image = rng.uniform(-1, 1, (2, *image_hw, 4)).astype(dtype)
  grid = _sample_grid(rng, 2, *grid_hw, dtype)
  want = _torch_grid_sample(image, grid, align_corners, padding_mode)
  got = grid_sample(jnp.asarray(image), jnp.asarray(grid), align_corners=align_corners, padding_mode=padding_mode)
  _assert_close(got, want, dtype)


@ALIGN
@PADDING
def test_grid_sample_gradients_finite(align_corners, padding_mode):
  """Gradients wrt image and grid are finite, at border, integer and far-outside points too."""
  rng = np.random.default_rng(3)
  image = jnp.asarray(rng.uniform(-1, 1, (2, 5, 7, 3)), jnp.float32)
  grid = _sample_grid(rng, 2, 4, 8, np.float32)
  grid[:, 1, :, :] = make_coordinate_grid(4, 8)[1:2]

  def loss(image, grid):
    out = grid_sample(image, grid, align_corners=align_corners, padding_mode=padding_mode)
    return jnp.sum(out**2)

  grad_image, grad_grid = jax.grad(loss, argnums=(0, 1))(image, jnp.asarray(grid))
  assert np.isfinite(np.asarray(grad_image)).all()
  assert np.isfinite(np.asarray(grad_grid)).all()
  assert np.abs(np.asarray(grad_grid)).sum() > 0


@ALIGN
@PADDING
def test_grid_sample_gradients_match_torch(align_corners, padding_mode):
  """Gradients wrt image and grid equal torch autograd's (float64, generic points)."""
  torch = _torch()
  rng = np.random.default_rng(4)
  image = rng.uniform(-1, 1, (2, 5, 7, 3))
  grid = _sample_grid(rng, 2, 4, 6, np.float64, border=False)
  timage = torch.from_numpy(_nchw(image)).requires_grad_()
  tgrid = torch.from_numpy(grid).requires_grad_()
  out = torch.nn.functional.grid_sample(timage, tgrid, mode="bilinear", padding_mode=padding_mode,
                                        align_corners=align_corners)
  (out**2).sum().backward()

  def loss(image, grid):
    return jnp.sum(grid_sample(image, grid, align_corners=align_corners, padding_mode=padding_mode)**2)

  with jax.enable_x64(True):
    grad_image, grad_grid = jax.grad(loss, argnums=(0, 1))(jnp.asarray(image), jnp.asarray(grid))
    np.testing.assert_allclose(grad_image, _nhwc(timage.grad.numpy()), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad_grid, tgrid.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_grid_sample_rejects_bad_inputs():
  """Bad shapes and unknown padding modes raise ValueError."""
  image = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError):
    grid_sample(image, jnp.zeros((1, 2, 2, 3)), align_corners=True)
  with pytest.raises(ValueError):
    grid_sample(image, jnp.zeros((1, 2, 2, 2)), align_corners=True, padding_mode="border")


# resize_bilinear and upsample_nearest2x.

RESIZE_CASES = [((64, 64), (32, 32)), ((128, 128), (32, 32)), ((256, 256), (64, 64)), ((32, 32), (64, 64)),
                ((7, 7), (13, 13)), ((13, 13), (5, 5)), ((7, 13), (13, 5)), ((12, 9), (1, 4))]


@ALIGN
@pytest.mark.parametrize("in_hw,out_hw", [((7, 7), (13, 13)), ((13, 13), (5, 5)), ((7, 13), (13, 5)),
                                          ((16, 8), (4, 12)), ((6, 5), (1, 3))])
def test_resize_bilinear_matches_loop_reference(dtype, align_corners, in_hw, out_hw):
  """resize_bilinear equals the plain-loop upsample_bilinear2d reference."""
  x = np.random.default_rng(5).uniform(-1, 1, (2, *in_hw, 3)).astype(dtype)
  got = resize_bilinear(jnp.asarray(x), *out_hw, align_corners=align_corners)
  _assert_close(got, _ref_resize(x, *out_hw, align_corners), dtype)


@ALIGN
@pytest.mark.parametrize("in_hw,out_hw", RESIZE_CASES)
def test_resize_bilinear_matches_torch(dtype, align_corners, in_hw, out_hw):
  """resize_bilinear equals F.interpolate(mode='bilinear') for up- and downsampling.

  In float32 torch computes source indices in float32 (error ~ in_size * eps), so against torch's float32
  output the tolerance grows with the input size; against torch run in float64 it stays 1e-5.
  """
  torch = _torch()
  x = np.random.default_rng(6).uniform(-1, 1, (2, *in_hw, 3)).astype(dtype)

  def interpolate(t):
    return _nhwc(torch.nn.functional.interpolate(t, size=out_hw, mode="bilinear", align_corners=align_corners).numpy())

  got = resize_bilinear(jnp.asarray(x), *out_hw, align_corners=align_corners)
  _assert_close(got, interpolate(torch.from_numpy(_nchw(x)).double()), dtype)
  tol = TOL[dtype] * max(1, max(in_hw) / 32)
  np.testing.assert_allclose(got, interpolate(torch.from_numpy(_nchw(x))), rtol=tol, atol=tol)


def test_resize_bilinear_same_size_is_identity():
  x = jnp.asarray(np.random.default_rng(7).uniform(size=(1, 5, 6, 2)), jnp.float32)
  np.testing.assert_array_equal(resize_bilinear(x, 5, 6, align_corners=False), x)


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 1, 4, 2)])
def test_upsample_nearest2x(dtype, shape):
  """upsample_nearest2x repeats each pixel 2x2, as F.interpolate(scale_factor=2, mode='nearest')."""
  x = np.random.default_rng(8).uniform(-1, 1, shape).astype(dtype)
  got = np.asarray(upsample_nearest2x(jnp.asarray(x)))
  want = np.empty((shape[0], 2 * shape[1], 2 * shape[2], shape[3]), dtype)
  for i, j in np.ndindex(*want.shape[1:3]):
    want[:, i, j] = x[:, i // 2, j // 2]
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 1, 4, 2)])
def test_upsample_nearest2x_matches_torch(dtype, shape):
  torch = _torch()
  x = np.random.default_rng(8).uniform(-1, 1, shape).astype(dtype)
  want = torch.nn.functional.interpolate(torch.from_numpy(_nchw(x)), scale_factor=2, mode="nearest")
  np.testing.assert_array_equal(upsample_nearest2x(jnp.asarray(x)), _nhwc(want.numpy()))


# Coordinates and heat maps.

@pytest.mark.parametrize("height,width", [(5, 7), (64, 64), (3, 2), (17, 9)])
def test_make_coordinate_grid(dtype, height, width):
  """Channel 0 is x = 2j/(w-1) - 1, channel 1 is y = 2i/(h-1) - 1."""
  grid = np.asarray(make_coordinate_grid(height, width, jnp.dtype(dtype)))
  assert grid.shape == (height, width, 2) and grid.dtype == dtype
  i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  _assert_close(grid[..., 0], 2 * j / (width - 1) - 1, dtype)
  _assert_close(grid[..., 1], 2 * i / (height - 1) - 1, dtype)
  assert grid[0, 0].tolist() == [-1, -1] and grid[-1, -1].tolist() == [1, 1]


def test_make_coordinate_grid_bit_exact_official_torch():
  """Bit-equal to the official torch `make_coordinate_grid` in float32, for many sizes."""
  torch = _torch()
  mismatches = []
  for height, width in [(5, 7), (16, 16), (17, 9), (32, 33), (64, 64), (65, 128), (256, 256)]:
    x = 2 * (torch.arange(width).float() / (width - 1)) - 1
    y = 2 * (torch.arange(height).float() / (height - 1)) - 1
    want = torch.stack([x.view(1, -1).repeat(height, 1), y.view(-1, 1).repeat(1, width)], 2).numpy()
    got = np.asarray(make_coordinate_grid(height, width, jnp.float32))
    for name, axis, n in (("x", 0, width), ("y", 1, height)):
      line_want = want[0, :, 0] if axis == 0 else want[:, 0, 1]
      line_got = got[0, :, 0] if axis == 0 else got[:, 0, 1]
      bad = np.flatnonzero(line_want.view(np.int32) != line_got.view(np.int32))
      if bad.size:
        i = bad[0]
        mismatches.append(f"{name} of ({height}, {width}): {bad.size}/{n} differ, indices {bad[:6].tolist()}, "
                          f"e.g. [{i}] torch {line_want[i]!r} got {line_got[i]!r}")
  assert not mismatches, "\n".join(mismatches)


LINSPACE_RANGES = [(-1.0, 1.0), (0.0, 1.0), (-3.7, 2.2), (5.0, -5.0), (0.1, 0.3), (0.0, 255.0)]


def test_torch_linspace_float32_basic():
  """Endpoints are exact and the result is float32 of the requested length."""
  for n in (1, 2, 3, 64, 255):
    line = torch_linspace_float32(-1.0, 1.0, n)
    assert line.dtype == np.float32 and line.shape == (n,)
    assert line[0] == -1 and (n == 1 or line[-1] == 1)


def test_torch_linspace_float32_bit_exact():
  """Bit-equal to float32 torch.linspace for n in 1..300 over several ranges."""
  torch = _torch()
  mismatches = []
  for start, end in LINSPACE_RANGES:
    for n in range(1, 301):
      want = torch.linspace(start, end, n, dtype=torch.float32).numpy()
      got = torch_linspace_float32(start, end, n)
      bad = np.flatnonzero(want.view(np.int32) != got.view(np.int32))
      if bad.size:
        i = bad[0]
        mismatches.append(f"({start}, {end}, n={n}): {bad.size} indices {bad[:6].tolist()}, "
                          f"e.g. [{i}] torch {want[i]!r} got {got[i]!r}")
  cap = torch.backends.cpu.get_cpu_capability()
  assert not mismatches, (f"{len(mismatches)} of {len(LINSPACE_RANGES) * 300} linspaces differ "
                          f"(torch CPU capability {cap}):\n" + "\n".join(mismatches[:40]))


@pytest.mark.parametrize("height,width", [(5, 7), (16, 16), (9, 4)])
def test_kp2gaussian(dtype, height, width):
  """kp2gaussian equals exp(-0.5 * ||grid - kp||^2 / var), as the official code, in (B, h, w, K)."""
  rng = np.random.default_rng(9)
  kp = rng.uniform(-1.2, 1.2, (2, 3, 2)).astype(dtype)
  got = kp2gaussian(jnp.asarray(kp), height, width, 0.01)
  assert got.shape == (2, height, width, 3)
  ys, xs = np.meshgrid(2 * np.arange(height) / (height - 1) - 1, 2 * np.arange(width) / (width - 1) - 1,
                       indexing="ij")
  want = np.empty((2, height, width, 3))
  for b, k in np.ndindex(2, 3):
    d2 = (xs - float(kp[b, k, 0]))**2 + (ys - float(kp[b, k, 1]))**2
    want[b, :, :, k] = np.exp(-0.5 * d2 / 0.01)
  _assert_close(got, want, dtype)


def test_kp2gaussian_matches_official_torch():
  """Equal to the official torch kp2gaussian (float32), transposed to (B, h, w, K)."""
  torch = _torch()
  kp = torch.from_numpy(np.random.default_rng(10).uniform(-1, 1, (2, 5, 2)).astype(np.float32))
  height, width, var = 12, 9, 0.01
  x = 2 * (torch.arange(width).float() / (width - 1)) - 1
  y = 2 * (torch.arange(height).float() / (height - 1)) - 1
  grid = torch.stack([x.view(1, -1).repeat(height, 1), y.view(-1, 1).repeat(1, width)], 2)
  want = torch.exp(-0.5 * ((grid[None, None] - kp[:, :, None, None]) ** 2).sum(-1) / var)
  got = kp2gaussian(jnp.asarray(kp.numpy()), height, width, var)
  np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)


# Anti-aliased downsampling.

SCALES = pytest.mark.parametrize("scale", [0.5, 0.25, 0.125])


def _torch_antialias(torch, x, scale):
  """FOMM AntiAliasInterpolation2d on NCHW torch `x`, kernel built in float32; returns (out, kernel)."""
  channels = x.shape[1]
  sigma = (1 / scale - 1) / 2
  ksize = 2 * round(sigma * 4) + 1
  ka = ksize // 2
  kb = ka - 1 if ksize % 2 == 0 else ka
  kernel = 1
  for mgrid in torch.meshgrid([torch.arange(ksize, dtype=torch.float32)] * 2, indexing="ij"):
    kernel = kernel * torch.exp(-(mgrid - (ksize - 1) / 2) ** 2 / (2 * sigma**2))
  kernel = (kernel / torch.sum(kernel)).view(1, 1, ksize, ksize).repeat(channels, 1, 1, 1)
  out = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (ka, kb, ka, kb)), kernel.to(x.dtype), groups=channels)
  step = int(1 / scale)
  return out[:, :, ::step, ::step], kernel


@SCALES
def test_antialias_kernel(scale):
  """Depthwise HWIO Gaussian with sigma = (1/scale - 1)/2, size 2*round(4 sigma)+1, summing to 1."""
  kernel = antialias_kernel(scale, 3)
  size = antialias_kernel_size(scale)
  assert size == 2 * round(4 * (1 / scale - 1) / 2) + 1
  assert kernel.shape == (size, size, 1, 3) and kernel.dtype == np.float32
  for c in range(3):
    np.testing.assert_allclose(kernel[:, :, 0, c], _ref_gaussian_kernel(scale), rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(kernel.sum(axis=(0, 1)), 1.0, rtol=1e-6)


@SCALES
@pytest.mark.parametrize("hw", [(32, 24), (37, 29)])
def test_antialias_downsample_matches_loop_reference(dtype, scale, hw):
  """antialias_downsample equals a plain zero-pad, correlate and subsample loop."""
  x = np.random.default_rng(11).uniform(-1, 1, (2, *hw, 3)).astype(dtype)
  kernel = antialias_kernel(scale, 3)
  got = antialias_downsample(jnp.asarray(x), jnp.asarray(kernel), scale)
  _assert_close(got, _ref_antialias(x, kernel[:, :, 0, 0].astype(np.float64), scale), dtype)


@SCALES
def test_antialias_kernel_matches_torch(scale):
  """antialias_kernel equals FOMM's float32 kernel up to float32 exp rounding (numpy vs torch libm)."""
  torch = _torch()
  _, tkernel = _torch_antialias(torch, torch.zeros(1, 3, 8, 8), scale)
  np.testing.assert_allclose(antialias_kernel(scale, 3), tkernel.permute(2, 3, 1, 0).numpy(), rtol=1e-6, atol=0)


@SCALES
@pytest.mark.parametrize("hw", [(64, 64), (37, 29)])
def test_antialias_downsample_matches_torch(dtype, scale, hw):
  """antialias_downsample equals FOMM's AntiAliasInterpolation2d given the same kernel."""
  torch = _torch()
  x = np.random.default_rng(12).uniform(-1, 1, (2, *hw, 3)).astype(dtype)
  want, tkernel = _torch_antialias(torch, torch.from_numpy(_nchw(x)), scale)
  got = antialias_downsample(jnp.asarray(x), jnp.asarray(tkernel.permute(2, 3, 1, 0).numpy()), scale)
  _assert_close(got, _nhwc(want.numpy()), dtype)


@SCALES
def test_antialias_pipeline_matches_torch(scale):
  """antialias_kernel + antialias_downsample equal AntiAliasInterpolation2d in float32."""
  torch = _torch()
  x = np.random.default_rng(13).uniform(0, 1, (2, 64, 48, 3)).astype(np.float32)
  want, _ = _torch_antialias(torch, torch.from_numpy(_nchw(x)), scale)
  got = antialias_downsample(jnp.asarray(x), jnp.asarray(antialias_kernel(scale, 3)), scale)
  _assert_close(got, _nhwc(want.numpy()), np.dtype(np.float32))


def test_antialias_scale_one_is_identity():
  x = jnp.ones((1, 4, 4, 2))
  assert antialias_downsample(x, jnp.ones((1, 1, 1, 2)), 1.0) is x


# Sharding and dtypes of the sampling ops.

def test_sampling_ops_keep_a_batch_sharded_input_local():
  """grid_sample and resize_bilinear on a batch split over 8 devices compile to per-device work: no collectives."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec
  devices = jax.devices()
  if len(devices) < 2:
    pytest.skip("needs several devices (tests/conftest.py sets 8 fake CPU devices)")
  sharding = NamedSharding(Mesh(np.asarray(devices), ("data",)), PartitionSpec("data"))
  rng = np.random.default_rng(9)
  batch = len(devices)
  image = jax.device_put(rng.uniform(-1, 1, (batch, 16, 12, 4)).astype(np.float32), sharding)
  grid = jax.device_put(rng.uniform(-1.1, 1.1, (batch, 10, 14, 2)).astype(np.float32), sharding)

  def sample(image, grid):
    return (grid_sample(image, grid, align_corners=True),
            grid_sample(image, grid, align_corners=False, padding_mode="reflection"),
            resize_bilinear(image, 7, 30, align_corners=True), resize_bilinear(image, 33, 5, align_corners=False))

  compiled = jax.jit(sample).lower(image, grid).compile()
  loss = lambda image, grid: sum(jnp.sum(jnp.sin(y)) for y in sample(image, grid))
  gradients = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(image, grid).compile()
  for hlo in (compiled.as_text(), gradients.as_text()):
    for collective in ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter"):
      assert collective not in hlo, f"{collective} in the compiled sampling ops or their gradients"
  for got, want in zip(compiled(image, grid), sample(np.asarray(image), np.asarray(grid))):
    assert got.sharding.is_equivalent_to(sharding, got.ndim)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # fused vs op by op: a few ulps


@pytest.mark.parametrize("in_hw,out_hw", [((16, 16), (4, 4)), ((5, 7), (13, 9))])
def test_resize_bilinear_bfloat16_stays_bfloat16(in_hw, out_hw):
  x = np.random.default_rng(10).uniform(-1, 1, (2, *in_hw, 3)).astype(np.float32)
  got = resize_bilinear(jnp.asarray(x, jnp.bfloat16), *out_hw, align_corners=True)
  assert got.dtype == jnp.bfloat16
  want = _ref_resize(np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32), *out_hw, align_corners=True)
  np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=2e-2)


def test_resize_bilinear_rejects_bad_inputs():
  with pytest.raises(ValueError, match="NHWC"):
    resize_bilinear(jnp.zeros((4, 4, 3)), 2, 2, align_corners=True)


def test_resize_bilinear_gathers_taps_instead_of_matrix_products():
  """Work proportional to the output: no dense (out x in) interpolation-matrix product in the compiled code."""
  resize = jax.jit(lambda x: resize_bilinear(x, 64, 48, align_corners=True))
  hlo = resize.lower(jnp.zeros((1, 256, 192, 8), jnp.float32)).compile().as_text()
  assert " dot(" not in hlo and "convolution(" not in hlo
