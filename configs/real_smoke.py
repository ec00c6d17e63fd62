"""Fine-tune the quickstart model on the real train_smoke clips; score it on their held-out later frames.

  python benchmarks/real_smoke_data.py --out workdir/real_smoke_data
  python -m mcc_jax.export --run workdir/quickstart --config configs/quickstart.py --out workdir/quickstart_model
  python train.py --config configs/real_smoke.py --workdir workdir/real_smoke
  python benchmarks/learning_check.py --config configs/real_smoke.py --workdir workdir/real_smoke

The ten train_smoke clips are ten identities, too few to learn motion from scratch, so the run starts from the model
the synthetic quickstart trained (`train.init_from`) and learns real faces from the first three quarters of each
clip; the test split is the last quarter (see benchmarks/real_smoke_data.py).

Measured (2-core CPU, 42 minutes; from the 1024-identity quickstart at step 2000), L1 on [0, 1] at 64 px:
- held-out last quarters (10 clips, 815 frames): EMA model 0.0305 at step 1500 (0.0403 at step 250), trained
  generator 0.0340, the synthetic quickstart model 0.0636, copying the source 0.0448;
- the training frames (2467): EMA 0.0243, copying the source 0.0596;
- new people (evaluation_sanity.py, the 8 eval clips, 1387 frames): 0.0900, worse than copying the source
  (0.0594) and than the synthetic model (0.0842): ten faces teach the faces, not motion in general.
"""
import ml_collections

from configs import quickstart


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = quickstart.get_config(arg)
  config.data.update(dir="workdir/real_smoke_data/data", repeat=100)
  config.train.update(init_from="workdir/quickstart_model", num_steps=1500, net_d_start_iter=1500)
  config.checkpoint.update(every_steps=250, keep=10)
  return config
