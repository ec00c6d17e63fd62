"""A drawn cartoon face with a chosen head offset, eye opening and mouth opening: a built-in example input."""
import numpy as np
from PIL import Image, ImageDraw


def drawn_face(size: int = 256, *, shift=(0.0, 0.0), eye_open: float = 1.0, mouth_open: float = 0.3) -> np.ndarray:
  """(size, size, 3) float32 in [-1, 1]; shift is the head offset as a fraction of the image size."""
  s = size / 256
  image = Image.new("RGB", (size, size), (70, 90, 120))
  draw = ImageDraw.Draw(image)
  cx, cy = size / 2 + shift[0] * size, size / 2 + shift[1] * size
  box = lambda x0, y0, x1, y1: (cx + x0 * s, cy + y0 * s, cx + x1 * s, cy + y1 * s)
  draw.ellipse(box(-70, -92, 70, 92), fill=(224, 182, 150))
  draw.chord(box(-74, -100, 74, 10), 180, 360, fill=(60, 40, 30))
  for ex in (-30, 30):
    h = max(1.5, 9 * eye_open)
    draw.ellipse(box(ex - 13, -12 - h, ex + 13, -12 + h), fill=(250, 250, 250))
    draw.ellipse(box(ex - 5, -12 - min(h, 5), ex + 5, -12 + min(h, 5)), fill=(40, 30, 20))
  draw.polygon([(cx, cy), (cx - 9 * s, cy + 28 * s), (cx + 9 * s, cy + 28 * s)], fill=(200, 150, 120))
  m = 4 + 26 * mouth_open
  draw.ellipse(box(-28, 48 - m / 2, 28, 48 + m / 2), fill=(150, 40, 50))
  return np.asarray(image, np.float32) / 127.5 - 1.0
