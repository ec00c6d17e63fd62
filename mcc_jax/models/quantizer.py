"""Nearest-neighbour vector quantiser whose codebook prefixes serve the different scales."""
import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.layers import uniform


class Embedding(nnx.Module):
  """A (num_codes, dim) table, torch's `nn.Embedding` state layout."""

  def __init__(self, num_codes: int, dim: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.weight = nnx.Param(uniform(rngs, (num_codes, dim), -1.0 / num_codes, 1.0 / num_codes, param_dtype))


class VectorQuantizer(nnx.Module):
  """VQ with a straight-through estimator; `num_codes` restricts the search to the first codes of the book."""

  def __init__(self, codebook_size: int, emb_dim: int, beta: float, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.embedding = Embedding(codebook_size, emb_dim, param_dtype=param_dtype, rngs=rngs)
    self.codebook_size = codebook_size
    self.beta = beta

  def codes(self, num_codes: int | None = None) -> jnp.ndarray:
    return self.embedding.weight[...][: num_codes or self.codebook_size]

  def __call__(self, z: jnp.ndarray, num_codes: int | None = None) -> tuple[jnp.ndarray, jnp.ndarray, dict]:
    """z: (..., D). Returns (quantised z with straight-through gradient, VQ loss, stats)."""
    stats_dtype = jnp.promote_types(z.dtype, jnp.float32)
    codebook = self.codes(num_codes).astype(stats_dtype)
    flat = z.reshape(-1, z.shape[-1]).astype(stats_dtype)
    distances = (jnp.sum(flat**2, axis=1, keepdims=True) + jnp.sum(codebook**2, axis=1)
                 - 2 * jnp.matmul(flat, codebook.T, precision=jax.lax.Precision.HIGHEST))
    indices = jnp.argmin(distances, axis=1)
    quantized = jnp.take(codebook, indices, axis=0)
    loss = (self.beta * jnp.mean((jax.lax.stop_gradient(quantized) - flat) ** 2)
            + jnp.mean((quantized - jax.lax.stop_gradient(flat)) ** 2))
    quantized = flat + jax.lax.stop_gradient(quantized - flat)
    usage = jnp.mean(jax.nn.one_hot(indices, codebook.shape[0], dtype=stats_dtype), axis=0)
    stats = {
        "indices": indices.reshape(z.shape[:-1]),
        "perplexity": jnp.exp(-jnp.sum(usage * jnp.log(usage + 1e-10))),
        "mean_distance": jnp.mean(distances),
    }
    return quantized.reshape(z.shape).astype(z.dtype), loss, stats
