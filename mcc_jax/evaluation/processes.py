"""Several evaluation processes (a pod): each evaluates its share of the tasks on its own devices; their partial
sums, counts and FID features meet through files in the shared workdir.

Device collectives are not used for this: the processes finish their shares minutes apart, longer than CPU (gloo)
collectives wait. The barrier is the coordination service's, with a long timeout.
"""
import pathlib

import jax
import numpy as np

BARRIER_TIMEOUT_S = 24 * 3600


def barrier(name: str) -> None:
  """Wait until every process reaches `name` (each name once per run); nothing with one process."""
  if jax.process_count() > 1:
    from orbax.checkpoint import multihost
    multihost.get_barrier_sync_fn()(key=f"mcc_jax_evaluation_{name}", timeout_ms=BARRIER_TIMEOUT_S * 1000)


def _part_path(directory, index: int) -> pathlib.Path:
  return pathlib.Path(directory) / f"partial_metrics.process{index}.npz"


def combine(directory, part: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
  """Every process's `part` (same keys on all), in process order, on every process. The files are removed once
  all have read them."""
  mine = _part_path(directory, jax.process_index())
  with open(mine, "wb") as f:
    np.savez(f, **part)
  barrier("parts_written")
  parts = []
  for index in range(jax.process_count()):
    path = _part_path(directory, index)
    if not path.is_file():
      raise FileNotFoundError(f"process {index}'s partial metrics are not in {directory}: with several processes "
                              "--workdir must be a directory that every process shares")
    with np.load(path) as loaded:
      parts.append({key: loaded[key] for key in loaded.files})
  barrier("parts_read")
  mine.unlink()
  return parts
