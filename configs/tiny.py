"""A 64 px MCC with narrow widths and small codebooks, for CPU tests: same structure as configs/paper.py.

  python -m mcc_jax.demo --config configs/tiny.py
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dtype = "float32"
  config.model = ml_collections.ConfigDict()
  config.model.motion_estimator = dict(
      num_kp=5, num_channels=3,
      kp_detector=dict(block_expansion=8, max_features=64, num_blocks=3, temperature=0.1,
                       estimate_jacobian=True, scale_factor=0.25, pad=0),
      dense_motion=dict(block_expansion=8, max_features=64, num_blocks=3, scale_factor=0.25,
                        estimate_occlusion_map=True, kp_variance=0.01),
  )
  config.model.generator = dict(
      img_size=64, nf=32, ch_mult=(1, 2, 2, 4), res_blocks=2, attn_resolutions=(8,), emb_dim=128, beta=0.25,
      codebook_size_motion=64, codebook_size_app=64, n_head=4, dim_embd_motion=32, n_layers_motion=2,
      dim_embd_app=64, n_layers_app=2, num_kp=5, flow_size=16)
  config.model.discriminator = dict(nc=3, ndf=16, n_layers=3)
  return config
