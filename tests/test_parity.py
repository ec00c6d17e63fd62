"""The full paper-size model against the official PyTorch code's float64 outputs (../shared/reference/parity).

Weights: every official state_dict key filled by the fixture's rule, loaded through the converter.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import parity_support as ps
from mcc_jax.convert import export_state_dict, mcc_from_state_dicts

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not ps.exists(), reason=ps.skip_reason())]
F64_BOUND = 1e-8
# The official float32 run itself differs from its float64 run by 1.4e-3 on this image (parity README).
F32_IMAGE_BOUND = 1e-3


@pytest.fixture(scope="module")
def fixture():
  return ps.load_fixture()


@pytest.fixture(scope="module")
def official_weights():
  return {net: ps.filled_state_dict(net) for net in ("net_g", "net_motion_estimator")}


def _pairs(out: dict) -> dict[str, np.ndarray]:
  """Our outputs under the fixture's names, in its layout (NCHW maps, flows (B, H, W, 2))."""
  motion = out["motion"]
  pairs = {
      "kp_source/value": motion["kp_source"]["value"], "kp_source/jacobian": motion["kp_source"]["jacobian"],
      "kp_driving/value": motion["kp_driving"]["value"], "kp_driving/jacobian": motion["kp_driving"]["jacobian"],
      "dense_motion/deformation": motion["deformation"],
      "dense_motion/sparse_motion": motion["sparse_motion"],
      "dense_motion/sparse_deformed": np.moveaxis(np.asarray(motion["sparse_deformed"]), -1, 2),
      "dense_motion/occlusion_map": ps.nchw(motion["occlusion_map"]),
      "dense_motion/mask": ps.nchw(motion["mask"]),
      "dense_motion/kp_heatmap": ps.nchw(motion["kp_heatmap"]),
      "dense_motion/driving_kp_heatmap": ps.nchw(motion["driving_kp_heatmap"]),
      "dense_motion/source": ps.nchw(motion["source"]),
      "net_g/out": ps.nchw(out["out"]),
      "net_g/lq_feat": ps.nchw(out["lq_feat"]),
  }
  for i, flow in enumerate(out["deformation_list"]):
    pairs[f"net_g/deformation_list/{i}"] = flow
  for i, residual in enumerate(out["res_deform_list"]):
    pairs[f"net_g/res_deform_list/{i}"] = residual
  for i, occlusion in enumerate(out["out_occ"]):
    pairs[f"net_g/out_occ/{i}"] = ps.nchw(occlusion)
  for name in ("deform_feat_list", "app_before_comp_list", "app_comp_list"):
    for i, feature in enumerate(out[name][:2]):
      pairs[f"net_g/{name}/{i}"] = ps.nchw(feature)
  for i, recon in enumerate(out.get("motion_recon_list", [])):
    pairs[f"net_g/motion_recon_list/{i}"] = recon
  for name in ("codebook_loss_motion_list", "codebook_loss_app_list"):
    for i, loss in enumerate(out.get(name, [])):
      pairs[f"net_g/{name}/{i}"] = loss
  if "out_lr" in out:
    pairs["net_g/out_lr/0"] = ps.nchw(out["out_lr"][0])
  return {k: np.asarray(v) for k, v in pairs.items()}


@pytest.fixture(scope="module")
def inference64(fixture, official_weights):
  with jax.enable_x64(True):
    model = mcc_from_state_dicts(official_weights["net_g"], official_weights["net_motion_estimator"],
                                 dtype=jnp.float64)
    source = jnp.asarray(ps.nhwc(fixture["source"]), jnp.float64)
    driving = jnp.asarray(ps.nhwc(fixture["driving"]), jnp.float64)
    graphdef, state = nnx.split(model)
    out = jax.jit(lambda s, x, d: nnx.merge(graphdef, s).forward(x, d, inference=True))(state, source, driving)
    return _pairs(out)


@pytest.fixture(scope="module")
def training64(fixture, official_weights):
  with jax.enable_x64(True):
    model = mcc_from_state_dicts(official_weights["net_g"], official_weights["net_motion_estimator"],
                                 dtype=jnp.float64)
    model.train()
    source = jnp.asarray(ps.nhwc(fixture["train/source"]), jnp.float64)
    driving = jnp.asarray(ps.nhwc(fixture["train/driving"]), jnp.float64)
    out = nnx.jit(lambda m, x, d: m.forward(x, d, gt=d, inference=False))(model, source, driving)
    pairs = _pairs(out)
    for key, value in export_state_dict(model.motion_estimator).items():
      pairs[f"net_motion_estimator_after/{key}"] = value
    return pairs


def _float32_in_fixture(key: str) -> bool:
  return any(name in key for name in ("lq_feat", "deform_feat_list", "app_before_comp_list", "app_comp_list"))


def _inference_keys():
  if not ps.exists():
    return []
  data = np.load(ps.PARITY_DIR / "mcc_parity_fixture.npz")
  return [k for k in data.files if k.startswith(("kp_", "dense_motion/", "net_g/"))]


def _training_keys():
  if not ps.exists():
    return []
  data = np.load(ps.PARITY_DIR / "mcc_parity_fixture.npz")
  return [k.removeprefix("train/") for k in data.files
          if k.startswith("train/") and k not in ("train/source", "train/driving")]


def _check(name, got, want):
  # Arrays the fixture stores in float32 can only agree to float32 rounding.
  bound = 1e-6 if _float32_in_fixture(name) else F64_BOUND
  ps.assert_parity(name, got, want, bound)


@pytest.mark.parametrize("key", _inference_keys())
def test_inference_float64(key, inference64, fixture):
  _check(f"inference f64 {key}", inference64[key], fixture[key])


@pytest.mark.parametrize("key", _training_keys())
def test_training_float64(key, training64, fixture):
  _check(f"training f64 {key}", training64[key], fixture[f"train/{key}"])


def test_every_training_batchnorm_statistic_is_compared(training64):
  data = np.load(ps.PARITY_DIR / "mcc_parity_fixture.npz")
  compared = {k for k in data.files if k.startswith("train/net_motion_estimator_after/")}
  ours = {f"train/{k}" for k in training64 if k.startswith("net_motion_estimator_after/")
          and k.endswith(("running_mean", "running_var"))}
  assert compared == ours


@pytest.fixture(scope="module")
def official_checkpoint_files(tmp_path_factory, official_weights):
  """The filled weights written as official .pth files (float32, with DDP `module.` prefixes on net_g)."""
  torch = pytest.importorskip("torch")
  directory = tmp_path_factory.mktemp("official")
  to_torch = lambda sd, prefix="": {prefix + k: torch.from_numpy(np.asarray(v, np.float32) if v.dtype.kind == "f"
                                                                 else v) for k, v in sd.items()}
  net_g = directory / "net_g_latest.pth"
  motion_estimator = directory / "net_motion_estimator_latest.pth"
  torch.save({"params": to_torch(official_weights["net_g"]),
              "params_ema": to_torch(official_weights["net_g"], "module.")}, net_g)
  torch.save({"params": to_torch(official_weights["net_motion_estimator"])}, motion_estimator)
  return net_g, motion_estimator


def test_load_official_float32(official_checkpoint_files, fixture):
  """The public API on .pth files, in float32: the final image against the float64 reference."""
  from mcc_jax.convert import load_official
  model = load_official(*official_checkpoint_files)
  source = jnp.asarray(ps.nhwc(fixture["source"]))
  driving = jnp.asarray(ps.nhwc(fixture["driving"]))
  out = model.reconstruct(source, driving)
  assert out["image"].dtype == jnp.float32
  for name, got, want, bound in (
      ("kp_driving/value", out["kp_driving"]["value"], fixture["kp_driving/value"], 1e-5),
      ("deformation_list/4", out["deformations"][4], fixture["net_g/deformation_list/4"], 1e-4),
      ("image", ps.nchw(out["image"]), fixture["net_g/out"], F32_IMAGE_BOUND)):
    ps.assert_parity(f"inference f32 {name}", got, want, bound)


def test_convert_cli_round_trip(official_checkpoint_files, tmp_path):
  """CLI import writes a checkpoint that load_model reads back bit for bit; --export writes official files."""
  torch = pytest.importorskip("torch")
  from mcc_jax.convert import load_official
  from mcc_jax.convert.__main__ import main
  from mcc_jax.model_checkpoint import load_model, state_arrays
  net_g, motion_estimator = official_checkpoint_files
  out = tmp_path / "converted"
  assert main(["--net-g", str(net_g), "--motion-estimator", str(motion_estimator), "--out", str(out)]) == 0
  loaded = state_arrays(load_model(out))
  direct = state_arrays(load_official(net_g, motion_estimator))
  assert loaded.keys() == direct.keys()
  for path in loaded:
    np.testing.assert_array_equal(loaded[path], direct[path], err_msg=str(path))

  exported = tmp_path / "exported"
  assert main(["--export", str(out), "--out", str(exported)]) == 0
  original = torch.load(net_g, weights_only=True)["params"]
  back = torch.load(exported / "net_g_latest.pth", weights_only=True)
  assert set(back) == {"params", "params_ema"}
  assert back["params"].keys() == original.keys()
  for key in original:
    assert torch.equal(back["params"][key], original[key]), key
  me_back = torch.load(exported / "net_motion_estimator_latest.pth", weights_only=True)["params"]
  assert set(me_back) == set(ps.official_keys()["net_motion_estimator"])


def test_convert_cli_reports_missing_file(tmp_path, capsys):
  from mcc_jax.convert.__main__ import main
  code = main(["--net-g", str(tmp_path / "nope.pth"), "--motion-estimator", str(tmp_path / "me.pth"),
               "--out", str(tmp_path / "o")])
  assert code == 1
  assert "nope.pth" in capsys.readouterr().err


def test_discriminator_float64(fixture):
  """PatchGAN logits on the fixture's generator output and ground truth (train mode), and its BatchNorm
  statistics after the official step's three calls: fake (G step), real, fake (D step)."""
  from mcc_jax.convert import load_state_dict
  from mcc_jax.models.factory import build_discriminator
  from mcc_jax.convert.official import paper_model_config
  with jax.enable_x64(True):
    disc = nnx.eval_shape(lambda: build_discriminator(paper_model_config(), dtype=jnp.float64,
                                                      param_dtype=jnp.float64))
    load_state_dict(disc, ps.filled_state_dict("net_d"), name="net_d")
    disc.train()
    fake = jnp.asarray(ps.nhwc(fixture["train/net_g/out"]), jnp.float64)
    real = jnp.asarray(ps.nhwc(fixture["train/driving"]), jnp.float64)
    call = nnx.jit(lambda d, x: d(x))
    got = {"disc_logits_fake_g": call(disc, fake), "disc_logits_real": call(disc, real),
           "disc_logits_fake": call(disc, fake)}
    for name, logits in got.items():
      _check(f"discriminator f64 {name}", ps.nchw(logits), fixture[f"losses/{name}"])
    for key, value in export_state_dict(disc).items():
      reference = fixture.get(f"losses/state_after_step/net_d/{key}")
      if reference is not None:
        _check(f"discriminator f64 state after step {key}", value, reference)
