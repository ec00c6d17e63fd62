"""Device meshes and shardings: batch on ('data', 'fsdp'), parameters replicated or sharded on 'fsdp'."""
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(data: int = -1, fsdp: int = 1, devices=None) -> Mesh:
  """A (data, fsdp) mesh over all devices (data = -1: whatever fsdp leaves), with Auto axis types."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  if data == -1:
    if devices.size % fsdp:
      raise ValueError(f"{devices.size} devices do not split into fsdp={fsdp}")
    data = devices.size // fsdp
  if data * fsdp != devices.size:
    raise ValueError(f"mesh data={data} x fsdp={fsdp} needs {data * fsdp} devices, there are {devices.size}")
  return Mesh(devices.reshape(data, fsdp), BATCH_AXES, axis_types=(AxisType.Auto, AxisType.Auto))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def state_sharding(state, mesh: Mesh, *, min_fsdp_size: int = 2**14):
  """Replicate every leaf, except that with an 'fsdp' axis larger than 1, arrays of at least `min_fsdp_size`
  elements are split along their largest dimension that the fsdp size divides."""
  fsdp = mesh.shape["fsdp"]

  def spec(leaf):
    shape = getattr(leaf, "shape", ())
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < min_fsdp_size:
      return replicated(mesh)
    for axis in np.argsort(shape)[::-1]:
      if shape[axis] % fsdp == 0:
        parts = [None] * len(shape)
        parts[axis] = "fsdp"
        return NamedSharding(mesh, P(*parts))
    return replicated(mesh)

  return jax.tree.map(spec, state)


def put_global(tree, shardings):
  """`jax.device_put` that also works when a sharding spans several processes: every process passes the same
  host values and keeps its own devices' shards."""
  if jax.process_count() == 1:
    return jax.device_put(tree, shardings)

  def put(x, sharding):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      impl = jax.random.key_impl(x)
      data = put(jax.random.key_data(x), sharding)
      return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl), out_shardings=sharding)(data)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree, shardings)
