"""Official PyTorch checkpoints <-> this project's Flax models."""
from mcc_jax.convert.official import (load_official, load_official_discriminator, mcc_from_state_dicts,
                                      read_torch_checkpoint)
from mcc_jax.convert.state_dict import CheckpointMismatchError, export_state_dict, load_state_dict

__all__ = [
    "CheckpointMismatchError", "export_state_dict", "load_official", "load_official_discriminator",
    "load_state_dict", "mcc_from_state_dicts", "read_torch_checkpoint",
]
