"""configs/paper.py shrunk for CPU tests: 64 px, narrow widths, 5 keypoints, 64-code codebooks.

The structure (four scales, two transformer layers per codebook, all fusions) is the paper's.

  python -m mcc_jax.demo   # uses this model; configs/quickstart.py trains it
"""
import ml_collections

from configs import paper


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = paper.get_config(arg)
  model = config.model
  model.motion_estimator["num_kp"] = 5
  model.motion_estimator["kp_detector"].update(block_expansion=8, max_features=64, num_blocks=3)
  model.motion_estimator["dense_motion"].update(block_expansion=8, max_features=64, num_blocks=3)
  model.generator.update(img_size=64, nf=32, attn_resolutions=(8,), emb_dim=128, codebook_size_motion=64,
                         codebook_size_app=64, n_head=4, dim_embd_app=64, num_kp=5, flow_size=16)
  model.discriminator.update(ndf=16, n_layers=3)
  config.train.perceptual_scales = (1.0, 0.5, 0.25)  # VGG19's four pools need at least 16 px
  return config
