"""Parity of the basic NNX layers and VQGAN/transformer blocks with torch, in float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mcc_jax.models.layers import BatchNorm2d, Conv2d, GroupNorm, LayerNorm, Linear
from mcc_jax.models.transformer import MultiheadAttention, TransformerLayer
from mcc_jax.models.vqgan_blocks import AttnBlock, Downsample, ResBlock, Upsample

torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = 1e-10
F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)


@pytest.fixture(autouse=True)
def _x64():
  """float64 throughout."""
  with jax.enable_x64(True):
    yield


def _rngs(seed=0):
  return nnx.Rngs(params=seed)


def _normal(shape, seed=0, scale=1.0, shift=0.0):
  return np.random.default_rng(seed).normal(shift, scale, shape)


def _perturb(module, seed=1):
  """Adds noise to every parameter, so that zero biases and unit scales are exercised too."""
  rng = np.random.default_rng(seed)
  nnx.update(module, jax.tree.map(lambda p: p + 0.2 * rng.normal(size=p.shape), nnx.state(module, nnx.Param)))
  return module


def _t(x):
  return torch.from_numpy(np.array(x, np.float64))


def _nchw(x):
  return _t(x).permute(0, 3, 1, 2)


def _nhwc(y):
  return y.detach().permute(0, 2, 3, 1).numpy()


def _close(got, want):
  got = np.asarray(got)
  assert got.dtype == np.float64
  want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
  np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def _copy(dst, src):
  with torch.no_grad():
    dst.copy_(_t(src[...]))


def _torch_conv(conv, size, stride=1, padding=0):
  """A torch conv with our weights; geometry comes from the caller, not from `conv`."""
  k = np.asarray(conv.kernel[...])
  assert k.shape[:2] == (size, size)
  t = torch.nn.Conv2d(k.shape[2], k.shape[3], size, stride=stride, padding=padding,
                      bias=conv.bias is not None).double()
  with torch.no_grad():
    t.weight.copy_(_t(k.transpose(3, 2, 0, 1)))
  if conv.bias is not None:
    _copy(t.bias, conv.bias)
  return t


def _torch_linear(linear):
  k = np.asarray(linear.kernel[...])
  t = torch.nn.Linear(*k.shape, bias=linear.bias is not None).double()
  with torch.no_grad():
    t.weight.copy_(_t(k.T))
  if linear.bias is not None:
    _copy(t.bias, linear.bias)
  return t


def _torch_norm(norm):
  c = norm.scale.shape[0]
  if isinstance(norm, GroupNorm):
    t = torch.nn.GroupNorm(norm.num_groups, c, eps=norm.eps)
  elif isinstance(norm, LayerNorm):
    t = torch.nn.LayerNorm(c, eps=norm.eps)
  else:
    t = torch.nn.BatchNorm2d(c, eps=norm.eps, momentum=norm.momentum)
  t = t.double()
  _copy(t.weight, norm.scale)
  _copy(t.bias, norm.bias)
  return t


def _torch_mha(mha):
  t = torch.nn.MultiheadAttention(mha.embed_dim, mha.num_heads).double()
  with torch.no_grad():
    t.in_proj_weight.copy_(_t(np.asarray(mha.in_proj.kernel[...]).T))
    t.out_proj.weight.copy_(_t(np.asarray(mha.out_proj.kernel[...]).T))
  _copy(t.in_proj_bias, mha.in_proj.bias)
  _copy(t.out_proj.bias, mha.out_proj.bias)
  return t


def _run_mha(t, query, key, value, key_padding_mask=None):
  """Batch-first call of a (sequence-first) torch MultiheadAttention."""
  mask = None if key_padding_mask is None else torch.from_numpy(np.asarray(key_padding_mask))
  out, _ = t(query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), key_padding_mask=mask,
             need_weights=False)
  return out.transpose(0, 1)


def _swish(x):
  return x * torch.sigmoid(x)


@pytest.mark.parametrize("kernel,stride,padding,use_bias", [
    (1, 1, 0, True), (3, 1, 1, True), (3, 2, 1, True), (3, 2, 0, False), (4, 2, 1, False), (4, 1, 1, True),
    (7, 1, 3, True), (7, 1, 0, True)])
def test_conv2d(kernel, stride, padding, use_bias):
  conv = _perturb(Conv2d(5, 6, kernel, stride=stride, padding=padding, use_bias=use_bias, rngs=_rngs(), **F64))
  x = _normal((2, 13, 11, 5))
  _close(conv(x), _nhwc(_torch_conv(conv, kernel, stride, padding)(_nchw(x))))


def test_linear():
  linear = _perturb(Linear(6, 4, rngs=_rngs(), **F64))
  x = _normal((2, 3, 6))
  _close(linear(x), _torch_linear(linear)(_t(x)))


def test_group_norm():
  norm = _perturb(GroupNorm(32, 64, eps=1e-6, **F64))
  x = _normal((2, 5, 4, 64), scale=3.0, shift=2.0)
  _close(norm(x), _nhwc(_torch_norm(norm)(_nchw(x))))


def test_layer_norm():
  norm = _perturb(LayerNorm(16, **F64))
  x = _normal((2, 7, 16), scale=3.0, shift=-1.0)
  _close(norm(x), _torch_norm(norm)(_t(x)))


def _check_batch_norm(call):
  """Two training steps (output and running statistics), then one eval step, against torch."""
  bn = _perturb(BatchNorm2d(6, **F64))
  ref = _torch_norm(bn)
  bn.train()
  ref.train()
  for seed in (0, 1):
    x = _normal((3, 5, 4, 6), seed=seed, scale=2.0, shift=seed + 0.5)
    _close(call(bn, x), _nhwc(ref(_nchw(x))))
    _close(bn.mean[...], ref.running_mean)
    _close(bn.var[...], ref.running_var)
  bn.eval()
  ref.eval()
  assert bn.use_running_average
  x = _normal((2, 3, 3, 6), seed=2)
  _close(call(bn, x), _nhwc(ref(_nchw(x))))
  _close(bn.mean[...], ref.running_mean)


def test_batch_norm_eager():
  _check_batch_norm(lambda bn, x: bn(x))


def test_batch_norm_nnx_jit_updates_running_stats():
  _check_batch_norm(nnx.jit(lambda bn, x: bn(x)))


@pytest.mark.parametrize("shared_context", [True, False])
def test_multihead_attention(shared_context):
  mha = _perturb(MultiheadAttention(8, 2, rngs=_rngs(), **F64))
  b, lq, lk = 3, 5, 7
  query = _normal((b, lq, 8), seed=0)
  key = _normal((lk, 8) if shared_context else (b, lk, 8), seed=1)
  value = key if shared_context else _normal((b, lk, 8), seed=2)
  mask = np.random.default_rng(3).random((b, lk)) < 0.4
  mask[:, 0] = False
  assert mask.any()
  tk, tv = (_t(a).expand(b, lk, 8) if shared_context else _t(a) for a in (key, value))
  _close(mha(query, key, value, mask), _run_mha(_torch_mha(mha), _t(query), tk, tv, mask))


def test_multihead_attention_all_masked_row_attends_to_all_keys():
  """Documented deviation from torch (NaN there): a fully masked row behaves as if unmasked."""
  mha = _perturb(MultiheadAttention(8, 2, rngs=_rngs(), **F64))
  query, context = _normal((3, 4, 8), seed=0), _normal((6, 8), seed=1)
  mask = np.zeros((3, 6), bool)
  mask[0, 1:3] = True
  mask[1] = True
  got = np.asarray(mha(query, context, context, mask))
  assert np.all(np.isfinite(got))
  _close(got[1], np.asarray(mha(query, context, context))[1])
  torch_mask = mask.copy()
  torch_mask[1] = False
  ctx = _t(context).expand(3, 6, 8)
  want = _run_mha(_torch_mha(mha), _t(query), ctx, ctx, torch_mask)
  _close(got[[0, 2]], want[[0, 2]])


def _torch_transformer_layer(layer, tokens, context, grid, pos, mask):
  ln1, ln2, ln3 = (_torch_norm(n) for n in (layer.norm1, layer.norm2, layer.norm3))
  conv1, conv2 = (_torch_conv(conv, 3, padding=1) for conv in (layer.conv1, layer.conv2))
  t, ctx, pos = _t(tokens), _t(context), _t(pos)
  b, n, e = t.shape
  a = ln1(t)
  t = t + _run_mha(_torch_mha(layer.self_attn), a + pos, a + pos, a, mask)
  a = ln2(t)
  ctx = ctx.expand(b, *ctx.shape)
  t = t + _run_mha(_torch_mha(layer.cross_attn), a + pos, ctx, ctx)
  a = ln3(t).transpose(1, 2).reshape(b, e, grid, grid)
  return t + conv2(F.gelu(conv1(a))).reshape(b, e, n).transpose(1, 2)


def test_transformer_layer():
  layer = _perturb(TransformerLayer(8, 2, 16, rngs=_rngs(), **F64))
  b, grid = 2, 3
  tokens, context = _normal((b, grid * grid, 8), seed=0), _normal((5, 8), seed=1)
  pos = _normal((grid * grid, 8), seed=2)
  mask = np.random.default_rng(3).random((b, grid * grid)) < 0.3
  mask[:, 4] = False
  got = layer(tokens, context, grid, pos=pos, key_padding_mask=mask)
  _close(got, _torch_transformer_layer(layer, tokens, context, grid, pos, mask))


def _torch_res_block(block, x):
  h = _torch_conv(block.conv1, 3, padding=1)(_swish(_torch_norm(block.norm1)(x)))
  h = _torch_conv(block.conv2, 3, padding=1)(_swish(_torch_norm(block.norm2)(h)))
  return h + (x if block.conv_out is None else _torch_conv(block.conv_out, 1)(x))


def _torch_attn_block(block, x):
  h = _torch_norm(block.norm)(x)
  b, c, height, width = h.shape
  q, k, v = (_torch_conv(conv, 1)(h).reshape(b, c, height * width) for conv in (block.q, block.k, block.v))
  weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * c**-0.5, dim=2)
  out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, height, width)
  return x + _torch_conv(block.proj_out, 1)(out)


@pytest.mark.parametrize("out_channels", [None, 64])
def test_res_block(out_channels):
  block = _perturb(ResBlock(32, out_channels, rngs=_rngs(), **F64))
  assert (block.conv_out is None) == (out_channels is None)
  x = _normal((2, 6, 5, 32))
  _close(block(x), _nhwc(_torch_res_block(block, _nchw(x))))


def test_attn_block():
  block = _perturb(AttnBlock(32, rngs=_rngs(), **F64))
  x = _normal((2, 4, 3, 32))
  _close(block(x), _nhwc(_torch_attn_block(block, _nchw(x))))


@pytest.mark.parametrize("size", [(8, 8), (7, 6)])
def test_downsample(size):
  block = _perturb(Downsample(4, rngs=_rngs(), **F64))
  x = _normal((2, *size, 4))
  want = _torch_conv(block.conv, 3, stride=2)(F.pad(_nchw(x), (0, 1, 0, 1)))
  _close(block(x), _nhwc(want))


def test_upsample():
  block = _perturb(Upsample(4, rngs=_rngs(), **F64))
  x = _normal((2, 3, 5, 4))
  want = _torch_conv(block.conv, 3, padding=1)(F.interpolate(_nchw(x), scale_factor=2, mode="nearest"))
  _close(block(x), _nhwc(want))
