"""`AppMotionCompFormer`: the MCC generator with multi-scale motion and appearance codebook compensation.

Scales are named by their feature resolution, as in the official code: for a 256 px image the latent is 32 px
and the scales are 32, 64, 128 and 256. Scale k (1-based) uses the first k/L of each codebook (L scales), and
the motion flow is always refined at the dense-motion resolution (64 for 256 px).

Under a bfloat16 `dtype`, flows, occlusions and sampling coordinates stay float32 (features are sampled in float32
and stored back in bfloat16), and so do the VQ distances and attention softmaxes. With `remat`, the encoder and
decoder blocks, the motion ResBlocks, the transformer layers and the fusion blocks are rematerialized.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from flax.core import FrozenDict

from mcc_jax.models.autoencoder import Decoder, Encoder
from mcc_jax.models.fusion import FuseSFTBlock
from mcc_jax.models.layers import Conv2d, Linear, at_least_float32
from mcc_jax.models.motion_refinement import BasicMotionEncoder, RefineFlow
from mcc_jax.models.quantizer import VectorQuantizer
from mcc_jax.models.remat import call_block, rematerialized
from mcc_jax.models.transformer import TransformerLayer
from mcc_jax.models.vqgan_blocks import Downsample, ResBlock, Upsample, normalize
from mcc_jax.ops import grid_sample, linspace_grid_float32, resize_bilinear

sg = jax.lax.stop_gradient


def warp(feature: jnp.ndarray, flow: jnp.ndarray) -> jnp.ndarray:
  """Backward-warp NHWC `feature` by an absolute (x, y) flow, resized (align_corners) to the feature size.

  Sampling runs in the wider of the two dtypes (float32 coordinates); the result has `feature`'s dtype."""
  flow = resize_bilinear(flow, feature.shape[1], feature.shape[2], align_corners=True)
  return grid_sample(feature, flow, align_corners=True).astype(feature.dtype)


def occlude(feature: jnp.ndarray, occlusion: jnp.ndarray) -> jnp.ndarray:
  occlusion = resize_bilinear(occlusion, feature.shape[1], feature.shape[2], align_corners=True)
  return (feature * occlusion).astype(feature.dtype)


class PatchLinear(nnx.Module):
  """Linear layer applied to (p x p x C) patches; `linear` sits at index 1 (embed) or 0 (un-embed) officially."""

  def __init__(self, in_features: int, out_features: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.linear = Linear(in_features, out_features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return self.linear(x)


def patchify(x: jnp.ndarray, patch: int) -> jnp.ndarray:
  """(B, g*p, g*p, C) -> (B, g*g, p*p*C) with (p1, p2, c) order, c fastest."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: jnp.ndarray, grid: int, patch: int) -> jnp.ndarray:
  b = tokens.shape[0]
  c = tokens.shape[-1] // (patch * patch)
  x = tokens.reshape(b, grid, grid, patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, grid * patch, grid * patch, c)


class AppMotionCompFormer(nnx.Module):
  """The MCC generator (paper configuration of the official `AppMotionCompFormer`)."""

  def __init__(self, *, img_size: int = 256, nf: int = 64, ch_mult: Sequence[int] = (1, 2, 2, 4),
               res_blocks: int = 2, attn_resolutions: Sequence[int] = (32,), emb_dim: int = 256,
               beta: float = 0.25, codebook_size_motion: int = 1024, codebook_size_app: int = 1024, n_head: int = 8,
               dim_embd_motion: int = 32, n_layers_motion: int = 2, dim_embd_app: int = 256, n_layers_app: int = 2,
               num_kp: int = 15, flow_size: int = 64, remat: bool = False, attention: str = "xla",
               dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    num_scales = len(ch_mult)
    latent = img_size // 2 ** (num_scales - 1)
    self.scales = tuple(latent * 2**i for i in range(num_scales))
    self.channels = FrozenDict({s: nf * ch_mult[num_scales - 1 - i] for i, s in enumerate(self.scales)})
    if emb_dim != self.channels[latent]:
      raise ValueError(f"emb_dim ({emb_dim}) must equal the latent width nf*ch_mult[-1] ({self.channels[latent]})")
    for size, name in ((codebook_size_motion, "codebook_size_motion"), (codebook_size_app, "codebook_size_app")):
      if size % num_scales:
        raise ValueError(f"{name} ({size}) must split evenly over the {num_scales} scales")
    if flow_size % 2 or (flow_size // 2) ** 2 < 1:
      raise ValueError(f"flow_size must be even, got {flow_size}")
    self.latent = latent
    self.flow_size = flow_size
    self.motion_grid = flow_size // 2
    self.codebook_size_motion = codebook_size_motion
    self.codebook_size_app = codebook_size_app
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    pdt = dict(param_dtype=param_dtype, rngs=rngs)
    transformer_kw = dict(kw, attention=attention)

    self.remat = remat
    self.encoder = Encoder(3, nf, emb_dim, ch_mult, res_blocks, img_size, attn_resolutions, remat=remat, **kw)
    self.generator = Decoder(nf, emb_dim, ch_mult, res_blocks, img_size, attn_resolutions, remat=remat, **kw)
    ends = self.encoder.level_ends
    # Encoder taps by resolution: the last block of each finer level. For the latent scale the appearance loss
    # taps the first residual (+ attention) block of the last level (block 11 officially), not the final output.
    encoder_taps = {s: ends[num_scales - 1 - i] for i, s in enumerate(self.scales) if i > 0}
    self.encoder_taps = FrozenDict(encoder_taps)
    self.app_loss_taps = FrozenDict({**encoder_taps, latent: ends[-2] + 2 + int(latent in attn_resolutions)})
    self.decoder_fuse = FrozenDict({self.generator.level_starts[s]: s for s in self.scales[1:]})

    for i, s in enumerate(self.scales):
      c = self.channels[s]
      if i == 0:
        setattr(self, f"app_feat_emb_{s}", Conv2d(c, dim_embd_app, 1, **kw))
        setattr(self, f"to_app_feat_{s}", Conv2d(dim_embd_app, c, 1, **kw))
      else:
        p = s // latent
        setattr(self, f"app_feat_emb_{s}", PatchLinear(c * p * p, dim_embd_app, **kw))
        setattr(self, f"to_app_feat_{s}", PatchLinear(dim_embd_app, c * p * p, **kw))
    self.quantize_app = VectorQuantizer(codebook_size_app, dim_embd_app, beta, **pdt)
    self.fuse_convs_dict = nnx.Dict({str(s): FuseSFTBlock(self.channels[s], self.channels[s], **kw)
                                     for s in self.scales[1:]})
    self.fuse_ms_dict = nnx.Dict({str(s): Conv2d(self.channels[s], self.channels[s], 3, padding=1, **kw)
                                  for s in self.scales[1:]})
    self.position_emb_app = nnx.Param(jnp.zeros((latent * latent, dim_embd_app), param_dtype))
    self.position_emb_motion = nnx.Param(jnp.zeros((self.motion_grid**2, dim_embd_motion), param_dtype))
    self.quantize_motion = VectorQuantizer(codebook_size_motion, dim_embd_motion, beta, **pdt)

    self.motion_emb = nnx.List([Conv2d(2, dim_embd_motion, 3, padding=1, **kw), Downsample(dim_embd_motion, **kw),
                                ResBlock(dim_embd_motion, dim_embd_motion, **kw)])
    self.motion_block = nnx.List([TransformerLayer(dim_embd_motion, n_head, 2 * dim_embd_motion, **transformer_kw)
                                  for _ in range(n_layers_motion)])
    self.to_motion = nnx.List([Upsample(dim_embd_motion, **kw), ResBlock(dim_embd_motion, dim_embd_motion, **kw),
                               normalize(dim_embd_motion, dtype=dtype, param_dtype=param_dtype),
                               Conv2d(dim_embd_motion, 2, 3, padding=1, **dict(kw, dtype=at_least_float32(dtype)))])
    self.BasicMotionEncoder = BasicMotionEncoder(dim_embd_motion, **kw)
    self.to_context = nnx.List([Conv2d(self.channels[s], 192, 1, **kw) for s in self.scales])
    self.refine = RefineFlow(**kw)
    self.app_block = nnx.List([TransformerLayer(dim_embd_app, n_head, 2 * dim_embd_app, **transformer_kw)
                               for _ in range(n_layers_app)])
    for s in self.scales:
      setattr(self, f"warped_source_enc_{s}", Conv2d(self.channels[s], dim_embd_motion, 1, **kw))
    self.driving_kp_enc = Conv2d(num_kp, dim_embd_motion, 1, **kw)
    self.motion_query_enc_1 = Conv2d(2 * dim_embd_motion, dim_embd_motion, 1, **kw)
    self.motion_query_enc_2 = Conv2d(2 * dim_embd_motion, dim_embd_motion, 1, **kw)
    self.dtype = dtype

  def _num_codes(self, codebook_size: int, scale_index: int) -> int:
    return codebook_size // len(self.scales) * (scale_index + 1)

  def _apply_layers(self, layers, x: jnp.ndarray) -> jnp.ndarray:
    for layer in layers:
      x = call_block(layer, x, remat=self.remat and isinstance(layer, ResBlock))
    return x

  def _transformer(self, layer, tokens, context, grid_size: int, pos, key_padding_mask=None) -> jnp.ndarray:
    call = rematerialized(lambda module, t, c, p, mask: module(t, c, grid_size, pos=p, key_padding_mask=mask),
                          self.remat)
    return call(layer, tokens, context, pos, key_padding_mask)

  def motion_codebook_compensation(self, displacement, query, context_feature, scale_index: int, training: bool):
    """One MCC step. displacement: (B, F, F, 2) flow minus identity, in pixels of the F x F flow grid.

    Returns the (B, F, F, 3) residual (flow in pixels, occlusion logit) and, in training, the VQ'd motion's
    reconstruction (pixels) and the VQ loss.
    """
    motion_feature = self._apply_layers(self.motion_emb, sg(displacement))
    num_codes = self._num_codes(self.codebook_size_motion, scale_index)
    extras = None
    if training:
      quantized, vq_loss, _ = self.quantize_motion(motion_feature, num_codes)
      extras = (self._apply_layers(self.to_motion, quantized), vq_loss)
    g = self.motion_grid
    query = resize_bilinear(query, g, g, align_corners=True)
    tokens = self.motion_query_enc_2(jnp.concatenate([motion_feature, query], axis=-1))
    b = tokens.shape[0]
    tokens = tokens.reshape(b, g * g, -1)
    codebook = self.quantize_motion.codes(num_codes)
    for layer in self.motion_block:
      tokens = self._transformer(layer, tokens, codebook, g, self.position_emb_motion[...])
    retrieved = resize_bilinear(tokens.reshape(b, g, g, -1), self.flow_size, self.flow_size, align_corners=True)
    encoding = self.BasicMotionEncoder(displacement, retrieved)
    context = jax.nn.relu(self.to_context[scale_index](context_feature))
    context = resize_bilinear(context, self.flow_size, self.flow_size, align_corners=True)
    return self.refine(encoding, context), extras

  def app_codebook_compensation(self, feature: jnp.ndarray, flow: jnp.ndarray, scale_index: int) -> jnp.ndarray:
    """One ACC step: rewrite the warped feature by attending to the appearance codebook (no outer residual).

    Tokens whose sampling location (the flow resized to the latent grid) falls outside the source are masked as
    keys in the first layer's self-attention.
    """
    s = self.scales[scale_index]
    g = self.latent
    b = feature.shape[0]
    flow_tokens = resize_bilinear(flow, g, g, align_corners=True).reshape(b, g * g, 2)
    ignore = jnp.any((flow_tokens > 1) | (flow_tokens < -1), axis=-1)
    embed = getattr(self, f"app_feat_emb_{s}")
    if scale_index == 0:
      tokens = embed(feature).reshape(b, g * g, -1)
    else:
      tokens = embed(patchify(feature, s // g))
    codebook = self.quantize_app.codes(self._num_codes(self.codebook_size_app, scale_index))
    for i, layer in enumerate(self.app_block):
      tokens = self._transformer(layer, tokens, codebook, g, self.position_emb_app[...], ignore if i == 0 else None)
    unembed = getattr(self, f"to_app_feat_{s}")
    if scale_index == 0:
      return unembed(tokens.reshape(b, g, g, -1))
    return unpatchify(unembed(tokens), g, s // g)

  def app_codebook_losses(self, driving: jnp.ndarray) -> list[jnp.ndarray]:
    """VQ losses of the driving image's encoder features against the appearance codebook, one per scale."""
    _, taps = self.encoder(driving, taps=tuple(self.app_loss_taps.values()))
    losses = []
    g = self.latent
    for i, s in enumerate(self.scales):
      feature = taps[self.app_loss_taps[s]]
      embed = getattr(self, f"app_feat_emb_{s}")
      z = embed(feature) if i == 0 else embed(patchify(feature, s // g)).reshape(feature.shape[0], g, g, -1)
      _, loss, _ = self.quantize_app(z, self._num_codes(self.codebook_size_app, i))
      losses.append(loss)
    return losses

  def __call__(self, source: jnp.ndarray, motion: dict, w: float = 1.0, gt: jnp.ndarray | None = None,
               inference: bool = True) -> dict:
    """source: (B, H, W, 3) in [-1, 1]; motion: the motion estimator's output (NHWC maps).

    With `inference=False` the output adds the training terms: `out_lr` (the latent-scale feature decoded with no
    fusion), `motion_recon_list`, `codebook_loss_motion_list`, given `gt` `codebook_loss_app_list`, and
    `last_layer_input` (what the final conv sees, for the adaptive GAN weight).
    """
    training = not inference
    with jax.named_scope("encoder"):
      z, enc = self.encoder(source, taps=tuple(self.encoder_taps.values()))
    enc = {s: enc[i] for s, i in self.encoder_taps.items()}
    flow = motion["deformation"]
    size = flow.shape[1]
    if size != self.flow_size:
      raise ValueError(f"expected a {self.flow_size}x{self.flow_size} flow, got {flow.shape}")
    identity = jnp.asarray(linspace_grid_float32(size)).astype(flow.dtype)
    pixels = (size - 1.0) / 2.0
    g = self.latent
    kp_feature = jax.nn.relu(self.driving_kp_enc(
        resize_bilinear(motion["driving_kp_heatmap"], g, g, align_corners=True)))

    flows, residuals, occlusions = [flow], [], []
    before_comp, after_comp, recons, motion_vq_losses = [], [], [], []

    def compensate(feature, scale_index, previous_occlusion):
      with jax.named_scope(f"compensation_{self.scales[scale_index]}"):
        return compensate_at_scale(feature, scale_index, previous_occlusion)

    def compensate_at_scale(feature, scale_index, previous_occlusion):
      s = self.scales[scale_index]
      warped = warp(feature, flows[-1])
      query_feature = jax.nn.relu(getattr(self, f"warped_source_enc_{s}")(
          resize_bilinear(warped, g, g, align_corners=True)))
      query = self.motion_query_enc_1(jnp.concatenate([query_feature, kp_feature], axis=-1))
      with jax.named_scope("motion_codebook"):
        residual, extras = self.motion_codebook_compensation(
            (flows[-1] - identity) * pixels, query, warped, scale_index, training)
      if extras is not None:
        recons.append(extras[0] / pixels)
        motion_vq_losses.append(extras[1])
      residuals.append(residual[..., :2] / pixels)
      flows.append(flows[-1] + residuals[-1])
      occlusions.append(jax.nn.sigmoid(previous_occlusion + residual[..., 2:]))
      compensated_in = occlude(warp(feature, flows[-1]), occlusions[-1])
      before_comp.append(compensated_in)
      with jax.named_scope("appearance_codebook"):
        after_comp.append(self.app_codebook_compensation(compensated_in, flows[-1], scale_index))
      return after_comp[-1]

    lq_feat = compensate(z, 0, motion["occlusion_map"])
    x = lq_feat
    x_lr = lq_feat if training else None
    last = len(self.generator.blocks) - 1
    fuse = rematerialized(lambda block, enc_feature, dec_feature: block(enc_feature, dec_feature, w), self.remat)
    for i in range(len(self.generator.blocks)):
      if i == last:
        last_layer_input = x
      with jax.named_scope("decoder"):
        x = self.generator.apply_block(i, x)
        if x_lr is not None:
          x_lr = self.generator.apply_block(i, x_lr)
      if i in self.decoder_fuse and w > 0:
        s = self.decoder_fuse[i]
        fused = compensate(enc[s], self.scales.index(s), occlusions[-1])
        with jax.named_scope(f"fusion_{s}"):
          x = fuse(self.fuse_convs_dict[str(s)], fused, x)
          x = x + self.fuse_ms_dict[str(s)](fused)

    out = {
        "out": x,
        "lq_feat": lq_feat,
        "out_occ": occlusions,
        "deformation_list": flows,
        "res_deform_list": residuals,
        "deform_feat_list": before_comp,
        "app_before_comp_list": before_comp,
        "app_comp_list": after_comp,
    }
    if training:
      out["last_layer_input"] = last_layer_input
      out["out_lr"] = [x_lr]
      out["motion_recon_list"] = recons
      out["codebook_loss_motion_list"] = motion_vq_losses
      if gt is not None:
        with jax.named_scope("app_codebook_losses"):
          out["codebook_loss_app_list"] = self.app_codebook_losses(gt)
    return out

