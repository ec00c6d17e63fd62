"""Build the networks from a config's `model` section."""
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.discriminator import VQGANDiscriminator
from mcc_jax.models.mcc import MCC


def _to_dict(section) -> dict:
  return section.to_dict() if hasattr(section, "to_dict") else dict(section)


def build_mcc(model_config, *, dtype=jnp.float32, param_dtype=jnp.float32, seed: int = 0) -> MCC:
  return MCC(motion_estimator=_to_dict(model_config.motion_estimator), generator=_to_dict(model_config.generator),
             dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(params=seed))


def build_discriminator(model_config, *, dtype=jnp.float32, param_dtype=jnp.float32,
                        seed: int = 0) -> VQGANDiscriminator:
  return VQGANDiscriminator(**_to_dict(model_config.discriminator), dtype=dtype, param_dtype=param_dtype,
                            rngs=nnx.Rngs(params=seed))
