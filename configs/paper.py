"""The official MCC configuration (`options/train.yml` of ShaelynZ/synergize-motion-appearance): 256 px.

  python -m mcc_jax.demo --config configs/paper.py --checkpoint DIR
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dtype = "float32"
  config.model = ml_collections.ConfigDict()
  config.model.motion_estimator = dict(
      num_kp=15, num_channels=3,
      kp_detector=dict(block_expansion=32, max_features=1024, num_blocks=5, temperature=0.1,
                       estimate_jacobian=True, scale_factor=0.25, pad=0),
      dense_motion=dict(block_expansion=64, max_features=1024, num_blocks=5, scale_factor=0.25,
                        estimate_occlusion_map=True, kp_variance=0.01),
  )
  config.model.generator = dict(
      img_size=256, nf=64, ch_mult=(1, 2, 2, 4), res_blocks=2, attn_resolutions=(32,), emb_dim=256, beta=0.25,
      codebook_size_motion=1024, codebook_size_app=1024, n_head=8, dim_embd_motion=32, n_layers_motion=2,
      dim_embd_app=256, n_layers_app=2, num_kp=15, flow_size=64)
  config.model.discriminator = dict(nc=3, ndf=64, n_layers=4)
  return config
