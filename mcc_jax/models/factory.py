"""Build the networks from a config's `model` section."""
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.discriminator import VQGANDiscriminator
from mcc_jax.models.mcc import MCC

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _to_dict(section) -> dict:
  return section.to_dict() if hasattr(section, "to_dict") else dict(section)


def compute_dtype(model_config):
  """The model config's `dtype` ("float32" | "bfloat16"; float32 when absent, as in older checkpoints)."""
  name = model_config.get("dtype", "float32")
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"model.dtype must be one of {sorted(COMPUTE_DTYPES)}, got {name!r}")
  return COMPUTE_DTYPES[name]


def attention_implementation(model_config) -> str:
  """The model config's `attention` ("xla" | "pallas"; "xla" when absent, as in older checkpoints)."""
  return model_config.get("attention", "xla")


def build_mcc(model_config, *, dtype=None, param_dtype=jnp.float32, remat: bool | None = None,
              attention: str | None = None, seed: int = 0) -> MCC:
  """dtype (compute), remat and attention default to the config's `dtype`, `remat` and `attention` keys (float32,
  False and 'xla' where absent, as in older checkpoints); parameters are `param_dtype`."""
  return MCC(motion_estimator=_to_dict(model_config.motion_estimator), generator=_to_dict(model_config.generator),
             remat=bool(model_config.get("remat", False)) if remat is None else remat,
             attention=attention_implementation(model_config) if attention is None else attention,
             dtype=compute_dtype(model_config) if dtype is None else dtype, param_dtype=param_dtype,
             rngs=nnx.Rngs(params=seed))


def build_discriminator(model_config, *, dtype=None, param_dtype=jnp.float32,
                        seed: int = 0) -> VQGANDiscriminator:
  """dtype (compute) defaults to the config's `dtype` key."""
  return VQGANDiscriminator(**_to_dict(model_config.discriminator),
                            dtype=compute_dtype(model_config) if dtype is None else dtype, param_dtype=param_dtype,
                            rngs=nnx.Rngs(params=seed))
