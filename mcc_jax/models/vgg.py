"""The torchvision VGG19 feature stack up to relu5_1, as the official perceptual loss uses it."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mcc_jax.models.layers import Conv2d

# torchvision vgg19 `features` config E; "M" is a 2x2 max pool. Each conv is followed by a ReLU.
_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# The official Vgg19 wrapper returns the outputs of features[0:2], [2:7], [7:12], [12:21], [21:30]:
# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
SLICE_ENDS = (2, 7, 12, 21, 30)
# torchvision's ImageNet statistics, as float32 tensors, applied by the official code to [-1, 1] images.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class VGG19Features(nnx.Module):
  """`features` mirrors torchvision's Sequential indices (None where a ReLU or pool sits) up to index 29."""

  def __init__(self, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    layers, in_channels = [], 3
    for item in _CONFIG:
      if item == "M":
        layers.append(None)
      else:
        layers += [Conv2d(in_channels, item, 3, padding=1, dtype=dtype, param_dtype=param_dtype, rngs=rngs), None]
        in_channels = item
      if len(layers) >= SLICE_ENDS[-1]:
        break
    self.features = nnx.List(layers[:SLICE_ENDS[-1]])
    self.dtype = dtype

  def __call__(self, images: jnp.ndarray) -> list[jnp.ndarray]:
    """images: NHWC as the official loss receives them (its [-1, 1] images, normalised as if in [0, 1])."""
    mean = jnp.asarray(IMAGENET_MEAN).astype(images.dtype)
    std = jnp.asarray(IMAGENET_STD).astype(images.dtype)
    x = ((images - mean) / std).astype(self.dtype)
    outputs = []
    for index, layer in enumerate(self.features):
      if layer is not None:
        x = layer(x)
      elif isinstance(self.features[index - 1], Conv2d):
        x = jax.nn.relu(x)
      else:
        b, h, w, c = x.shape
        if h < 2 or w < 2:
          raise ValueError(f"VGG19 max pool on a {h}x{w} map: the image is too small for this pyramid scale")
        x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
      if index + 1 in SLICE_ENDS:
        outputs.append(x)
    return outputs
