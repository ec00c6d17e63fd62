"""Orbax checkpoints holding the train state and the grain iterator in one save; resume skips a corrupt latest."""
import logging
import pathlib

import grain
import orbax.checkpoint as ocp


def make_manager(directory, *, every_steps: int, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=every_steps, create=True)
  return ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator, *, force: bool = False) -> bool:
  return manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    data_iter=grain.checkpoint.CheckpointSave(data_iterator)),
                      force=force)


def restore_latest(manager: ocp.CheckpointManager, abstract_state, data_iterator):
  """(step, state) of the newest readable checkpoint, restoring the iterator in place; (None, None) if none.

  A checkpoint that fails to restore is reported, moved aside to `unreadable-<step>` (so the run can write that
  step again) and the next older one is tried.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          data_iter=grain.checkpoint.CheckpointRestore(data_iterator)))
    except Exception as e:  # orbax raises many types for damaged files
      logging.error("checkpoint at step %d is unreadable (%s: %s); trying the previous one", step,
                    type(e).__name__, e)
      print(f"warning: checkpoint at step {step} is unreadable ({type(e).__name__}); trying the previous one")
      damaged = pathlib.Path(manager.directory) / str(step)
      damaged.rename(damaged.with_name(f"unreadable-{step}"))
      manager.reload()
      continue
    return step, restored["state"]
  return None, None
