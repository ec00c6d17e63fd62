"""The losses of one official training iteration (`AppMotionCompModel.optimize_parameters`), functionally.

Networks come in as (graphdef, state) pairs and are merged inside, so BatchNorm running statistics are returned
as new state rather than mutated: the motion estimator's keypoint detector sees driving, source, then the
equivariance-transformed driving frame; the discriminator sees the generated image (generator step), then the
real and the generated image (discriminator step), each call updating its statistics as in torch.
"""
import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax import losses

sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """The official `options/train.yml` weights."""
  pixel: float = 1.0
  perceptual: float = 1.0
  low_res: float = 0.5  # the latent-scale-only decode, pixel and perceptual
  motion_code: float = 1.0
  motion_recon: float = 32.0
  app_code: float = 1.0
  equivariance_value: float = 1.0
  equivariance_jacobian: float = 1.0
  keypoint_distance: float = 1.0
  adaptive_max: float = 1.0
  adaptive_scale: float = 0.8
  perceptual_scales: tuple = losses.PERCEPTUAL_SCALES  # drop the coarsest for images below 128 px


def apply_module(graphdef, state, fn, *args, train: bool = True):
  """Run `fn(module, *args)` on a fresh merge of (graphdef, state); returns (result, updated BatchStats)."""
  module = nnx.merge(graphdef, state, copy=True)
  if train:
    module.train()
  else:
    module.eval()
  result = fn(module, *args)
  return result, nnx.state(module, nnx.BatchStat)


def _last_layer_grad(last_conv, layer_input: jnp.ndarray, output_grad: jnp.ndarray) -> jnp.ndarray:
  """Gradient of a loss w.r.t. the final conv's kernel, given the loss's gradient w.r.t. the conv's output."""
  kernel = last_conv.kernel[...]
  _, vjp = jax.vjp(lambda k: last_conv.convolve(sg(layer_input), k), kernel)
  return vjp(output_grad.astype(kernel.dtype))[0]


def generator_objective(mcc_params, mcc_graphdef, mcc_rest, disc_graphdef, disc_state, vgg_graphdef, vgg_state,
                        source: jnp.ndarray, driving: jnp.ndarray, transform: losses.RandomTPS, *, with_gan: bool,
                        weights: LossWeights = LossWeights()):
  """Total generator + motion-estimator loss (differentiable in `mcc_params`) and its terms.

  Returns (total, (terms, new_mcc_batch_stats, new_disc_batch_stats, image)). `with_gan` adds the adaptive-weight
  hinge GAN term (iterations after `net_d_start_iter`).
  """
  model = nnx.merge(mcc_graphdef, mcc_params, mcc_rest, copy=True)
  model.train()
  vgg = nnx.merge(vgg_graphdef, vgg_state)
  with jax.named_scope("motion_estimator"):
    motion = model.motion_estimator(driving, source)
  with jax.named_scope("generator"):
    out = model.generator(source, motion, gt=driving, inference=False)
  image = out["out"]
  terms = {}
  def perceptual_fn(img):
    if not weights.perceptual:  # skipped outright: VGG19 costs most of a small model's step
      return jnp.zeros((), img.dtype)
    with jax.named_scope("perceptual_loss"):
      return weights.perceptual * losses.pyramid_perceptual_loss(vgg, img, driving, weights.perceptual_scales)

  def recon_terms(img):
    return weights.pixel * losses.l1(img, driving), perceptual_fn(img)

  new_disc_stats = nnx.state(nnx.merge(disc_graphdef, disc_state), nnx.BatchStat)
  if with_gan:
    def recon_and_gan(img):
      with jax.named_scope("discriminator"):
        logits, stats = apply_module(disc_graphdef, disc_state, lambda d, x: d(x), img)
      pix, percep = recon_terms(img)
      return (pix + percep, losses.hinge_generator_loss(logits), pix, percep), stats
    (recon, gan, pix, percep), vjp, new_disc_stats = jax.vjp(recon_and_gan, image, has_aux=True)
    one, zero = jnp.ones_like(recon), jnp.zeros_like(recon)
    last_conv = model.generator.generator.blocks[-1]
    recon_grad = _last_layer_grad(last_conv, out["last_layer_input"], vjp((one, zero, zero, zero))[0])
    gan_grad = _last_layer_grad(last_conv, out["last_layer_input"], vjp((zero, one, zero, zero))[0])
    d_weight = losses.adaptive_gan_weight(recon_grad, gan_grad, weights.adaptive_max, weights.adaptive_scale)
    terms.update(l_g_gan=gan, d_weight=d_weight, l_g_gan_weighted=d_weight * gan,
                 recon_grad_norm=jnp.linalg.norm(recon_grad.ravel()), gan_grad_norm=jnp.linalg.norm(gan_grad.ravel()))
  else:
    pix, percep = recon_terms(image)
    recon = pix + percep
  terms["l_g_pix"] = pix
  terms["l_g_percep"] = percep
  terms["l_g_motion_codebook_code"] = weights.motion_code * sum(out["codebook_loss_motion_list"])
  terms["l_g_motion_codebook_recon"] = losses.motion_codebook_recon_loss(
      out["motion_recon_list"], out["deformation_list"][:-1], weights.motion_recon)
  low_res = out["out_lr"][0]
  terms["l_g_pix_lr_0"] = weights.low_res * weights.pixel * losses.l1(low_res, driving)
  terms["l_g_percep_lr_0"] = weights.low_res * perceptual_fn(low_res)
  terms["l_g_app_codebook_code"] = weights.app_code * sum(out["codebook_loss_app_list"])
  with jax.named_scope("equivariance"):
    kp_transformed = model.motion_estimator.kp_detector(transform.transform_frame(driving))
  value, jacobian = losses.equivariance_losses(motion["kp_driving"], kp_transformed, transform)
  terms["l_equivariance_value"] = weights.equivariance_value * value
  terms["l_equivariance_jacobian"] = weights.equivariance_jacobian * jacobian
  terms["l_kpd"] = weights.keypoint_distance * losses.keypoint_distance_loss(motion["kp_driving"], motion["kp_source"])
  total = recon
  for name in ("l_g_gan_weighted", "l_g_motion_codebook_code", "l_g_motion_codebook_recon", "l_g_pix_lr_0",
               "l_g_percep_lr_0", "l_g_app_codebook_code", "l_equivariance_value", "l_equivariance_jacobian",
               "l_kpd"):
    if name in terms:
      total = total + terms[name]
  terms["l_g_total"] = total
  return total, (terms, nnx.state(model, nnx.BatchStat), new_disc_stats, image)


def discriminator_objective(disc_params, disc_graphdef, disc_rest, real: jnp.ndarray, fake: jnp.ndarray):
  """Hinge loss on real then generated images (two BatchNorm batches, in that order).

  Returns (l_d_real + l_d_fake, (terms, new_disc_batch_stats)).
  """
  disc = nnx.merge(disc_graphdef, disc_params, disc_rest, copy=True)
  disc.train()
  with jax.named_scope("discriminator"):
    real_logits = disc(real)
    fake_logits = disc(sg(fake))
  l_real, l_fake = losses.hinge_discriminator_losses(real_logits, fake_logits)
  terms = {"l_d_real": l_real, "l_d_fake": l_fake, "out_d_real": jnp.mean(real_logits),
           "out_d_fake": jnp.mean(fake_logits)}
  return l_real + l_fake, (terms, nnx.state(disc, nnx.BatchStat))
