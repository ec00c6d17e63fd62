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
