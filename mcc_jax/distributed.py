"""Joining a multi-process run before JAX is used, for train.py and evaluate.py.

`--multihost` lets JAX find its peers (TPU pods, SLURM, Open MPI). Anywhere else, set JAX_COORDINATOR_ADDRESS
(host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID in each process's environment.
"""
import os

import jax

ENVIRONMENT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_processes(multihost: bool) -> None:
  """jax.distributed.initialize() from the environment variables above when JAX_NUM_PROCESSES is set, with
  auto-detection when `multihost`; nothing for a single process."""
  if "JAX_NUM_PROCESSES" in os.environ:
    missing = [name for name in ENVIRONMENT if not os.environ.get(name)]
    if missing:
      raise ValueError(f"JAX_NUM_PROCESSES is set but not {' or '.join(missing)}: a multi-process run needs all of "
                       f"{', '.join(ENVIRONMENT)}")
    jax.distributed.initialize(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                               num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                               process_id=int(os.environ["JAX_PROCESS_ID"]))
  elif multihost:
    jax.distributed.initialize()
