"""Mixed precision (model.dtype = "bfloat16"): bfloat16 activations, float32 parameters, statistics, losses,
coordinates and outputs, and a bfloat16 result close to float32 on the same weights."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import parity_support as ps
from configs import paper, tiny
from mcc_jax.models.factory import build_discriminator, build_mcc

B = 2


def _same_weights_in(model, dtype):
  """A copy of `model` (all variables) that computes in `dtype`."""
  config = tiny.get_config().model
  copy = nnx.eval_shape(lambda: build_mcc(config, dtype=dtype))
  nnx.update(copy, nnx.state(model))
  return copy


def _training_forward(model, source, driving):
  graphdef, state = nnx.split(model)

  @jax.jit
  def forward(state):
    m = nnx.merge(graphdef, state, copy=True)
    m.train()
    return m.forward(source, driving, gt=driving, inference=False), nnx.state(m, nnx.BatchStat)

  return forward(state)


@pytest.fixture(scope="module")
def tiny_runs():
  config = tiny.get_config().model
  size = config.generator["img_size"]
  keys = jax.random.split(jax.random.key(11))
  source, driving = (jax.random.uniform(k, (B, size, size, 3), minval=-1.0, maxval=1.0) for k in keys)
  model32 = build_mcc(config, seed=0)
  model16 = _same_weights_in(model32, jnp.bfloat16)
  return {"model16": model16, "float32": _training_forward(model32, source, driving),
          "bfloat16": _training_forward(model16, source, driving)}


def test_config_dtype_selects_compute_dtype():
  config = tiny.get_config().model
  assert paper.get_config().model.dtype == "float32" and paper.get_config().model.remat is False
  config.dtype = "bfloat16"
  model = nnx.eval_shape(lambda: build_mcc(config))
  assert model.generator.encoder.blocks[1].conv1.dtype == jnp.bfloat16
  assert model.motion_estimator.kp_detector.predictor.encoder.down_blocks[0].conv.dtype == jnp.float32
  assert nnx.eval_shape(lambda: build_discriminator(config)).main[0].dtype == jnp.bfloat16
  config.dtype = "float16"
  with pytest.raises(ValueError, match="model.dtype must be one of"):
    build_mcc(config)


def test_parameters_and_statistics_stay_float32(tiny_runs):
  model = tiny_runs["model16"]
  params = jax.tree.leaves(nnx.state(model, nnx.Param))
  assert params and all(p.dtype == jnp.float32 for p in params)
  _, new_stats = tiny_runs["bfloat16"]
  stats = jax.tree.leaves(new_stats)
  assert stats and all(s.dtype == jnp.float32 for s in stats)
  _, stats32 = tiny_runs["float32"]
  for updated, reference in zip(stats, jax.tree.leaves(stats32)):
    np.testing.assert_allclose(updated, reference, rtol=2e-2, atol=2e-3)


def test_activations_bfloat16_and_sensitive_outputs_float32(tiny_runs):
  out, _ = tiny_runs["bfloat16"]
  assert out["lq_feat"].dtype == jnp.bfloat16  # the compute really is bfloat16
  motion = out["motion"]
  float32_outputs = [out["out"], out["out_lr"][0], motion["deformation"], motion["occlusion_map"], motion["mask"],
                     motion["kp_driving"]["value"], motion["kp_driving"]["jacobian"], *out["deformation_list"],
                     *out["res_deform_list"], *out["out_occ"], *out["motion_recon_list"],
                     *out["codebook_loss_motion_list"], *out["codebook_loss_app_list"]]
  for value in float32_outputs:
    assert value.dtype == jnp.float32, value.dtype


def test_bfloat16_close_to_float32(tiny_runs):
  """Training-mode forward of random tiny weights (measured on CPU: image 5.3e-2, final flow 8.0e-5, final
  occlusion 4.9e-5); the parity test below measures the paper model. The motion estimator computes in float32
  under either dtype, so its keypoints agree to float32 rounding."""
  out32, _ = tiny_runs["float32"]
  out16, _ = tiny_runs["bfloat16"]
  keypoints = ps.rel_error(out16["motion"]["kp_driving"]["value"], out32["motion"]["kp_driving"]["value"])
  assert keypoints <= 1e-6
  for name, bound, pick in (
      ("image", 0.1, lambda o: o["out"]),
      ("final flow", 1e-3, lambda o: o["deformation_list"][-1]),
      ("final occlusion", 1e-3, lambda o: o["out_occ"][-1])):
    error = ps.rel_error(pick(out16), pick(out32))
    assert 0 < error <= bound, f"{name}: bfloat16 vs float32 relative error {error:.2e} (bound {bound:.0e})"


@pytest.mark.slow
@pytest.mark.skipif(not ps.exists(), reason=ps.skip_reason())
def test_bfloat16_paper_model_on_parity_images():
  """The paper model with the fixture's filled official weights (float32 parameters), computing in bfloat16,
  against the official float64 outputs. Measured on CPU: image 4.3e-2 (mean |error| 2.7 of 255 grey levels,
  PSNR 39 dB), final flow 1.6e-3, keypoints 4e-7 (float32 motion estimator); float32 gives 4.8e-4 on the image."""
  from mcc_jax.convert import load_state_dict
  fixture = ps.load_fixture()
  model = nnx.eval_shape(lambda: build_mcc(paper.get_config().model, dtype=jnp.bfloat16))
  load_state_dict(model.generator, ps.filled_state_dict("net_g"), name="net_g")
  load_state_dict(model.motion_estimator, ps.filled_state_dict("net_motion_estimator"), name="net_motion_estimator")
  model.eval()
  out = model.reconstruct(jnp.asarray(ps.nhwc(fixture["source"])), jnp.asarray(ps.nhwc(fixture["driving"])))
  assert out["image"].dtype == jnp.float32
  ps.assert_parity("inference bf16 kp_driving/value", out["kp_driving"]["value"], fixture["kp_driving/value"], 1e-5)
  ps.assert_parity("inference bf16 deformation_list/4", out["deformations"][4], fixture["net_g/deformation_list/4"],
                   5e-3)
  ps.assert_parity("inference bf16 image", ps.nchw(out["image"]), fixture["net_g/out"], 6e-2)


def test_training_vgg19_computes_in_the_model_dtype():
  from mcc_jax.training.loop import build_vgg19
  config = tiny.get_config()
  config.train.update(perceptual_weight=1.0, allow_random_vgg19=True)
  assert build_vgg19(config).features[0].dtype == jnp.float32
  config.model.dtype = "bfloat16"
  vgg = build_vgg19(config)
  assert vgg.features[0].dtype == jnp.bfloat16 and vgg.features[0].kernel[...].dtype == jnp.float32
