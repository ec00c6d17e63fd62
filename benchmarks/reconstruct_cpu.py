"""Time one `MCC.reconstruct` at the paper size (256 px, batch 1) in float32 on this machine.

  python benchmarks/reconstruct_cpu.py [--repeats 5] [--batch 1]

Random (untrained) weights: the cost does not depend on the values. Prints compile time and the median of the
timed runs, as JSON.
"""
import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--batch", type=int, default=1)
  args = parser.parse_args()
  from configs import paper
  from mcc_jax.models.factory import build_mcc
  model = build_mcc(paper.get_config().model)
  model.eval()
  rng = np.random.default_rng(0)
  source = jnp.asarray(rng.uniform(-1, 1, (args.batch, 256, 256, 3)), jnp.float32)
  driving = jnp.asarray(rng.uniform(-1, 1, (args.batch, 256, 256, 3)), jnp.float32)
  start = time.perf_counter()
  jax.block_until_ready(model.reconstruct(source, driving)["image"])
  first = time.perf_counter() - start
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    jax.block_until_ready(model.reconstruct(source, driving)["image"])
    times.append(time.perf_counter() - start)
  print(json.dumps({
      "device": jax.devices()[0].device_kind, "platform": platform.processor() or platform.machine(),
      "cpu_count": jax.local_device_count(), "jax": jax.__version__, "batch": args.batch, "dtype": "float32",
      "first_call_s": round(first, 2), "median_s": round(statistics.median(times), 3),
      "times_s": [round(t, 3) for t in times]}))


if __name__ == "__main__":
  main()
