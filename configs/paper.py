"""The official MCC configuration (`options/train.yml` of ShaelynZ/synergize-motion-appearance): 256 px.

  python train.py --config configs/paper.py --workdir DIR --config.data.dir=DATA \
      --config.train.vgg19_path=vgg19-dcbb9e9d.pth
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = ml_collections.ConfigDict()
  config.model.dtype = "float32"  # compute dtype, "float32" | "bfloat16" (parameters, norm statistics, losses: fp32)
  config.model.remat = False  # rematerialize each block in the backward pass (less memory, ~1/3 more compute)
  config.model.attention = "xla"  # "pallas": a fused attention kernel for GPUs (mcc_jax/ops/attention.py)
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

  config.data = ml_collections.ConfigDict(dict(
      dir="",  # a dataset built by input_pipeline.prepare ('' = synthetic faces written into the workdir)
      synthetic=dict(identities=32, clips_per_identity=4, frames=64, test_fraction=0.125),
      repeat=100, hflip_prob=0.5, time_flip_prob=0.5, worker_count=0))
  config.train = ml_collections.ConfigDict(dict(
      num_steps=250_000, global_batch_size=16, base_lr=8e-5, milestones=(200_000, 225_000), ema_decay=0.995,
      net_d_start_iter=5001, perceptual_weight=1.0, perceptual_scales=(1.0, 0.5, 0.25, 0.125),
      vgg19_path="",  # torchvision's vgg19-dcbb9e9d.pth; required unless allow_random_vgg19
      allow_random_vgg19=False,
      init_from="",  # an mcc_jax model checkpoint (e.g. converted official weights) to start from
      # 0: BatchNorm statistics and the adaptive GAN weight over the global batch; 4: per group of 4 samples, as the
      # official 4-GPU x 4-sample run computes them (mcc_jax/training/device_groups.py)
      bn_group_size=0,
  ))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  config.checkpoint = ml_collections.ConfigDict(dict(every_steps=5000, keep=3))
  config.log = ml_collections.ConfigDict(dict(every_steps=100, images_every_steps=5000))
  return config
