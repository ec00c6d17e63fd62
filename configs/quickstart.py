"""Train the tiny MCC on synthetic talking faces on a CPU (2000 steps: about 45 minutes on 2 cores).

  python train.py --config configs/quickstart.py --workdir workdir/quickstart
  python benchmarks/learning_check.py --workdir workdir/quickstart   # held-out identities vs copying the source

The synthetic dataset (1024 identities, about 2 minutes) is written into the workdir on first use. No VGG19 weights
ship with the project, so the perceptual loss is off (it is also most of a 64 px model's step); for the official
loss pass `--config.train.perceptual_weight=1 --config.train.vgg19_path=vgg19-dcbb9e9d.pth`.

Measured with this config (`learning_check.py --max-clips 32`: 32 clips of held-out identities, 992 frames):
L1 of the EMA model 0.0215 at step 2000 against 0.0256 for copying the source (the raw generator: 0.0257). With 64
identities the generator memorised faces: 0.0331 on the first 8 of those clips at step 2000, against 0.0291 for
copying the source, while it beat copying the source on its own training clips. The discriminator joins only after the last step here:
started at step 2600 of a 64-identity run it raised held-out L1 from 0.031 to 0.033 within 400 steps; it needs a
trained generator, as the official start at iteration 5001 suggests (`--config.train.net_d_start_iter`).
"""
import ml_collections

from configs import tiny


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = tiny.get_config(arg)
  # Many identities: with few the generator memorises their faces instead of learning to move the source.
  config.data.update(repeat=25, synthetic=dict(identities=1024, clips_per_identity=1, frames=32, test_fraction=0.125))
  config.train.update(num_steps=2000, global_batch_size=8, net_d_start_iter=2000, milestones=(5000, 6000),
                      base_lr=2e-4, perceptual_weight=0.0)
  config.checkpoint.update(every_steps=200, keep=10)
  config.log.update(every_steps=10, images_every_steps=100)
  return config
