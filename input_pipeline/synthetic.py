"""Synthetic talking-face clips with known motion, written in the same dataset format as real clips.

Each identity is a drawn face (skin, hair, eyes, brows, nose, lips, ears, neck and shirt over a soft background)
whose look follows from its seed. Each clip moves it with smooth per-frame motion: head translation, roll, a
yaw-like turn (inner features shift sideways, the face narrows), scale, blinks and speech-like mouth opening.
Shapes are drawn with PIL at 2-4x and downscaled; lighting, eye sockets and nose shadows are analytic fields.

Motion (`MOTION_NAMES`, one row per frame): dx, dy (head offset, fractions of the frame size), roll (radians,
clockwise on screen), yaw (radians; > 0 turns the face towards the image's right), scale (face size factor),
eye_open and mouth_open (0 closed .. 1 open). `boxes` is the bounding square of the face oval (no hair or ears).

The faces pass dlib's frontal HOG detector (every frame of the default 8 x 3 x 32 dataset at 256 px), but clips go
straight into the ClipStore as finished crops, so no detection step runs on them.

  python -m input_pipeline.synthetic --out DIR [--identities 8] [--clips-per-identity 3] [--frames 32] [--size 256]
"""
import argparse
import dataclasses
import json
import math
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from input_pipeline.clip_store import ClipMeta, ClipStore
from input_pipeline.face_dataset import DATASET_NAME, build_dataset, dataset_dir, open_split

MOTION_NAMES = ("dx", "dy", "roll", "yaw", "scale", "eye_open", "mouth_open")
FPS = 25.0
FACE_CENTER = (0.5, 0.45)
FACE_HALF_HEIGHT = 0.27
FACE_DEPTH = 0.8
HAIR_SHADING = 170

_SKIN_TONES = np.array([(248, 216, 190), (236, 190, 160), (220, 170, 130), (198, 140, 100), (160, 105, 72),
                        (120, 78, 52)], np.float64)
_HAIR_COLOURS = np.array([(22, 18, 16), (50, 32, 22), (88, 58, 36), (130, 80, 40), (160, 60, 30), (200, 160, 95),
                          (150, 145, 140)], np.float64)
_IRIS_COLOURS = np.array([(70, 45, 25), (110, 75, 40), (60, 100, 140), (70, 110, 80), (120, 100, 60)], np.float64)


@dataclasses.dataclass(frozen=True)
class Identity:
  """The look of one synthetic person; lengths are in face half-heights."""
  skin: tuple
  hair: tuple
  hair_style: str
  iris: tuple
  lips: tuple
  brows: tuple
  shirt: tuple
  background: tuple
  background_angle: float
  face_width: float
  jaw_taper: float
  eye_spacing: float
  eye_width: float
  eye_height: float
  brow_thickness: float
  brow_lift: float
  nose_length: float
  nose_width: float
  mouth_width: float
  lip_fullness: float
  light: tuple


def _mix(a, b, t):
  return tuple(float(x) for x in np.asarray(a) * (1 - t) + np.asarray(b) * t)


def _jitter(rng, colour, amount):
  return tuple(float(c) for c in np.clip(np.asarray(colour) + rng.uniform(-amount, amount, 3), 0, 255))


def make_identity(identity_seed: int) -> Identity:
  """The identity drawn from its seed."""
  rng = np.random.default_rng([identity_seed, 0x1D])
  tone = rng.uniform(0, len(_SKIN_TONES) - 1)
  low = int(tone)
  skin = _jitter(rng, _mix(_SKIN_TONES[low], _SKIN_TONES[min(low + 1, len(_SKIN_TONES) - 1)], tone - low), 8)
  hair = _jitter(rng, _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], 10)
  lips = _jitter(rng, np.asarray(_mix(skin, (190, 70, 80), rng.uniform(0.45, 0.65))) * 0.85, 6)
  brows = tuple(np.minimum(_mix(hair, (40, 28, 20), 0.3), np.asarray(skin) * 0.5).tolist())
  hue = rng.uniform(0, 2 * math.pi)
  base = 140 + 60 * np.cos(hue + np.array([0, 2.1, 4.2]))
  top = _jitter(rng, base * rng.uniform(0.7, 1.1), 25)
  bottom = _jitter(rng, np.asarray(top) * rng.uniform(0.45, 0.8), 15)
  shirt = _jitter(rng, rng.uniform(30, 220, 3), 0)
  light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.5, -0.1), 1.0])
  return Identity(
      skin=skin, hair=hair, hair_style=str(rng.choice(["short", "long", "fringe", "crop"])),
      iris=_jitter(rng, _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))], 10), lips=lips, brows=brows, shirt=shirt,
      background=(top, bottom), background_angle=float(rng.uniform(-0.6, 0.6)),
      face_width=float(rng.uniform(0.7, 0.8)), jaw_taper=float(rng.uniform(0.05, 0.3)),
      eye_spacing=float(rng.uniform(0.26, 0.31)), eye_width=float(rng.uniform(0.13, 0.155)),
      eye_height=float(rng.uniform(0.065, 0.08)), brow_thickness=float(rng.uniform(0.03, 0.05)),
      brow_lift=float(rng.uniform(0.13, 0.17)), nose_length=float(rng.uniform(0.35, 0.43)),
      nose_width=float(rng.uniform(0.1, 0.14)), mouth_width=float(rng.uniform(0.18, 0.24)),
      lip_fullness=float(rng.uniform(0.8, 1.2)), light=tuple(light / np.linalg.norm(light)))


def _smooth_track(rng, num_frames, amplitude, min_period=30.0, max_period=120.0, components=3):
  """A sum of slow sinusoids with random periods and phases, scaled to about `amplitude` at most."""
  t = np.arange(num_frames)[:, None]
  periods = rng.uniform(min_period, max_period, components)
  phases = rng.uniform(0, 2 * math.pi, components)
  weights = rng.uniform(0.5, 1.0, components)
  return amplitude * (np.sin(2 * math.pi * t / periods + phases) @ weights) / weights.sum()


def _blinks(rng, num_frames):
  """Eye opening: about 1 with blinks (closed for 2-3 frames), the first within 40 frames, then every 2-4 s."""
  profile = np.array([0.5, 0.05, 0.0, 0.05, 0.4, 0.8])
  eye_open = 1.0 - 0.08 * (1 + _smooth_track(rng, num_frames, 1.0))
  start = int(rng.integers(2, 40))
  while start < num_frames:
    span = eye_open[start:start + len(profile)]
    eye_open[start:start + len(profile)] = np.minimum(span, profile[:len(span)])
    start += int(rng.integers(50, 110))
  return eye_open


def _speech(rng, num_frames):
  """Mouth opening: syllables every 7-13 frames under a slowly varying loudness with pauses."""
  rate = 2 * math.pi / rng.uniform(8, 11) * (1 + _smooth_track(rng, num_frames, 0.2, 20, 60))
  phase = np.cumsum(rate) + rng.uniform(0, 2 * math.pi)
  loudness = np.clip(0.75 + _smooth_track(rng, num_frames, 0.6, 30, 90), 0, 1)
  return loudness * (0.5 - 0.5 * np.cos(phase))


def make_motion(clip_rng, num_frames: int) -> np.ndarray:
  """(T, len(MOTION_NAMES)) float32 per-frame motion; dx, dy are fractions of the frame size, angles in radians."""
  energy = clip_rng.uniform(0.6, 1.2)
  columns = {
      "dx": _smooth_track(clip_rng, num_frames, 0.05 * energy),
      "dy": _smooth_track(clip_rng, num_frames, 0.03 * energy),
      "roll": _smooth_track(clip_rng, num_frames, 0.12 * energy),
      "yaw": _smooth_track(clip_rng, num_frames, 0.3 * energy),
      "scale": 1 + _smooth_track(clip_rng, num_frames, 0.06 * energy),
      "eye_open": _blinks(clip_rng, num_frames),
      "mouth_open": _speech(clip_rng, num_frames),
  }
  return np.stack([columns[name] for name in MOTION_NAMES], axis=1).astype(np.float32)


def _ellipse(cx, cy, rx, ry, n=28):
  angle = np.linspace(0, 2 * math.pi, n, endpoint=False)
  return np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], axis=1)


def _rgb(colour, scale=1.0):
  return tuple(int(round(min(255.0, c * scale))) for c in colour)


class _Pose:
  """Maps face coordinates (x right, y down, in face half-heights; depth for the turn) to canvas pixels."""

  def __init__(self, identity: Identity, motion: dict, canvas: int):
    self.width = identity.face_width
    self.yaw = float(motion["yaw"])
    self.center = np.array([(FACE_CENTER[0] + motion["dx"]) * canvas, (FACE_CENTER[1] + motion["dy"]) * canvas])
    self.unit = FACE_HALF_HEIGHT * canvas * float(motion["scale"])
    roll = float(motion["roll"])
    self.rotation = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    self.squeeze = 1 - 0.5 * math.sin(self.yaw) ** 2

  def turned(self, points, lift=0.0):
    """Points on the face surface (raised by `lift`) after the turn, still in face units."""
    points = np.asarray(points, np.float64)
    x, y = points[:, 0], points[:, 1]
    surface = np.sqrt(np.clip(1 - (x / self.width) ** 2 - y ** 2, 0, 1))
    z = FACE_DEPTH * self.width * surface + lift
    return np.stack([x * math.cos(self.yaw) + z * math.sin(self.yaw), y], axis=1)

  def outline(self, points):
    """Silhouette points (face edge, hair, ears): narrowed by the turn; only the middle (chin, crown) follows it."""
    points = np.asarray(points, np.float64)
    x = points[:, 0]
    middle = np.clip(1 - np.abs(x) / self.width, 0, 1)
    return np.stack([x * self.squeeze + 0.25 * math.sin(self.yaw) * middle, points[:, 1]], axis=1)

  def to_canvas(self, points):
    return self.center + (np.asarray(points) @ self.rotation.T) * self.unit

  def to_face(self, pixels):
    """Canvas pixels back to turned face units (the inverse of `to_canvas`)."""
    return ((np.asarray(pixels) - self.center) / self.unit) @ self.rotation


def _polygon(draw, pose, points, fill, *, surface=True, lift=0.0):
  flat = pose.turned(points, lift) if surface else pose.outline(points)
  draw.polygon([tuple(p) for p in pose.to_canvas(flat)], fill=fill)


def _face_outline(identity, mouth_open, n=64):
  angle = np.linspace(0, 2 * math.pi, n, endpoint=False)
  y = np.sin(angle)
  lower = np.clip(y, 0, None)
  x = identity.face_width * np.cos(angle) * (1 - identity.jaw_taper * lower ** 1.5)
  y = y + 0.08 * mouth_open * np.clip((y - 0.3) / 0.7, 0, None)
  return np.stack([x, y], axis=1)


def _hair_shapes(identity):
  """(behind the head, over the forehead) hair polygons in face units; None where the style has none."""
  w = identity.face_width
  angle = np.linspace(math.pi, 2 * math.pi, 25)
  crown = np.stack([(w + 0.07) * np.cos(angle), -0.25 + 1.0 * np.sin(angle)], axis=1)
  hairline_x = np.linspace(w * 0.98, -w * 0.98, 21)
  style = identity.hair_style
  if style == "fringe":
    hairline_y = -0.45 + 0.05 * np.cos(hairline_x * 9)
  elif style == "crop":
    hairline_y = -0.62 + 0.3 * (hairline_x / w) ** 2
  else:
    hairline_y = -0.6 + 0.38 * (hairline_x / w) ** 2
  side = -0.3 if style != "crop" else -0.38
  front = np.concatenate([[[-w - 0.06, side]], crown, [[w + 0.06, side]], np.stack([hairline_x, hairline_y], 1)])
  back = None
  if style == "long":
    angle = np.linspace(math.pi, 2 * math.pi, 25)
    top = np.stack([(w + 0.12) * np.cos(angle), -0.2 + 1.08 * np.sin(angle)], axis=1)
    back = np.concatenate([[[-w - 0.2, 1.05], [-w - 0.14, 0.3]], top, [[w + 0.14, 0.3], [w + 0.2, 1.05]]])
  return back, front


def _hair_highlight(identity):
  """A lighter crescent on the crown, lit from above."""
  w = identity.face_width
  angle = np.linspace(math.pi * 1.2, math.pi * 1.8, 15)
  outer = np.stack([(w - 0.02) * np.cos(angle), -0.25 + 0.92 * np.sin(angle)], axis=1)
  inner = np.stack([(w - 0.12) * np.cos(angle), -0.25 + 0.8 * np.sin(angle)], axis=1)
  return np.concatenate([outer, inner[::-1]])


def _eye_shapes(identity, side, eye_open):
  """(white, upper lid cover, lower lid cover, lash line, iris, pupil, glint) for the eye at x = side * spacing."""
  cx, cy, w, h = side * identity.eye_spacing, -0.1, identity.eye_width, identity.eye_height
  x = np.linspace(-w, w, 17)
  bulge = 1 - (x / w) ** 2
  tilt = 0.012 * side * x / w
  lower = cy + 0.55 * h * bulge ** 0.9 - tilt * 0.3
  upper = lower - 1.55 * h * max(eye_open, 0.0) * bulge ** 0.75 - tilt * 0.7
  white = np.concatenate([np.stack([cx + x, upper], 1), np.stack([cx + x, lower], 1)[::-1]])
  corners = lambda dy: [[cx + w * 1.05, cy + dy], [cx - w * 1.05, cy + dy]]
  upper_cover = np.concatenate([np.stack([cx + x, upper], 1), corners(-2.2 * h)])
  lower_cover = np.concatenate([np.stack([cx + x, lower], 1), corners(1.6 * h)])
  lash = np.concatenate([np.stack([cx + x * 1.04, upper - 0.006], 1),
                         np.stack([cx + x[::-1] * 1.0, upper[::-1] + 0.012 + 0.008 * bulge[::-1]], 1)])
  iris_radius = 0.62 * w
  iris = _ellipse(cx, cy - 0.1 * h, iris_radius * 0.9, iris_radius, 24)
  pupil = _ellipse(cx, cy - 0.1 * h, iris_radius * 0.42, iris_radius * 0.45, 16)
  glint = _ellipse(cx + 0.3 * iris_radius, cy - 0.45 * iris_radius, iris_radius * 0.16, iris_radius * 0.16, 10)
  return white, upper_cover, lower_cover, lash, iris, pupil, glint


def _brow(identity, side):
  cx = side * (identity.eye_spacing + 0.01)
  x = np.linspace(-identity.eye_width * 1.2, identity.eye_width * 1.25, 13)
  arch = -0.1 - identity.brow_lift - 0.035 * (1 - ((x - 0.02) / identity.eye_width / 1.2) ** 2)
  thickness = identity.brow_thickness * (1 - 0.5 * np.clip((x / identity.eye_width / 1.25), 0, 1))
  top = np.stack([cx + side * x, arch - thickness / 2], 1)
  bottom = np.stack([cx + side * x, arch + thickness / 2], 1)
  return np.concatenate([top, bottom[::-1]])


def _mouth_shapes(identity, mouth_open):
  """(lips, mouth opening, upper teeth) in face units; the opening is None for a closed mouth."""
  w, cy, full = identity.mouth_width, 0.56, identity.lip_fullness
  x = np.linspace(-w, w, 21)
  bulge = 1 - (x / w) ** 2
  gap = 0.2 * mouth_open
  bow = 0.012 * np.exp(-((np.abs(x) - 0.045) / 0.03) ** 2)
  upper_top = cy - 0.05 * full * bulge ** 0.6 + bow
  seam_up = cy - 0.004 - gap * 0.25 * bulge ** 0.8
  seam_down = cy + 0.004 + gap * 0.75 * bulge ** 0.7
  lower_bottom = seam_down + 0.065 * full * bulge ** 0.6
  lips = np.concatenate([np.stack([x, upper_top], 1), np.stack([x, lower_bottom], 1)[::-1]])
  if mouth_open < 0.08:
    return lips, np.concatenate([np.stack([x, seam_up], 1), np.stack([x, seam_down], 1)[::-1]]), None
  inner = np.concatenate([np.stack([x * 0.92, seam_up], 1), np.stack([x * 0.92, seam_down], 1)[::-1]])
  teeth_x = x[3:-3] * 0.9
  teeth = np.concatenate([np.stack([teeth_x, seam_up[3:-3] - 0.002], 1),
                          np.stack([teeth_x, seam_up[3:-3] + np.minimum(0.035, gap * 0.45)], 1)[::-1]])
  return lips, inner, teeth


def _background(identity: Identity, canvas: int, rng) -> Image.Image:
  """A tilted two-colour gradient with a few blurred shapes (a room behind the person)."""
  y, x = np.mgrid[0:canvas, 0:canvas] / canvas
  t = np.clip(y * math.cos(identity.background_angle) + (x - 0.5) * math.sin(identity.background_angle), 0, 1)
  top, bottom = (np.asarray(c) for c in identity.background)
  image = Image.fromarray((top * (1 - t[..., None]) + bottom * t[..., None]).astype(np.uint8))
  draw = ImageDraw.Draw(image)
  for _ in range(3):
    x0, y0 = rng.uniform(-0.2, 0.9, 2) * canvas
    w, h = rng.uniform(0.1, 0.5, 2) * canvas
    colour = np.clip((top + bottom) / 2 * rng.uniform(0.7, 1.3) + rng.uniform(-20, 20, 3), 0, 255)
    draw.rectangle((x0, y0, x0 + w, y0 + h), fill=_rgb(colour))
  return image.filter(ImageFilter.GaussianBlur(canvas / 40))


def _draw_person(identity, motion, canvas, background):
  """(frame, shading mask: 255 on skin, less on hair, pose, face outline in canvas pixels) at canvas size."""
  pose = _Pose(identity, motion, canvas)
  image = background.copy()
  mask = Image.new("L", (canvas, canvas), 0)
  draw, mask_draw = ImageDraw.Draw(image), ImageDraw.Draw(mask)
  skin = identity.skin
  mouth_open, eye_open = float(motion["mouth_open"]), float(motion["eye_open"])
  hair_back, hair_front = _hair_shapes(identity)
  if hair_back is not None:
    for target, colour in ((draw, _rgb(identity.hair, 0.8)), (mask_draw, HAIR_SHADING)):
      _polygon(target, pose, hair_back, colour, surface=False)

  neck = np.array([[-0.36, 0.3], [0.36, 0.3], [0.42, 1.5], [-0.42, 1.5]]) * [identity.face_width / 0.75, 1]
  for target, colour in ((draw, _rgb(skin, 0.82)), (mask_draw, 255)):
    _polygon(target, pose, neck, colour, surface=False)

  torso_center = pose.center + np.array([-motion["dx"], -motion["dy"]]) * canvas * 0.5
  shoulders = _ellipse(0, 0, 1.9, 0.75, 40) * pose.unit + torso_center + [0, 1.95 * pose.unit]
  draw.polygon([tuple(p) for p in shoulders], fill=_rgb(identity.shirt))
  mask_draw.polygon([tuple(p) for p in shoulders], fill=0)
  neckline = _ellipse(0, 0, 0.42, 0.22, 24) * pose.unit + torso_center + [0, 1.3 * pose.unit]
  draw.polygon([tuple(p) for p in neckline], fill=_rgb(skin, 0.8))

  if hair_back is None:
    for side in (-1, 1):
      reach = 0.09 - 0.25 * side * math.sin(pose.yaw)
      if reach <= 0.01:
        continue
      edge = side * identity.face_width * pose.squeeze
      ear = _ellipse(edge + side * (reach - 0.05) / 2, 0.0, (reach + 0.05) / 2, 0.17, 20)
      for target, colour in ((draw, _rgb(skin, 0.93)), (mask_draw, 255)):
        target.polygon([tuple(p) for p in pose.to_canvas(ear)], fill=colour)
      inner = _ellipse(edge + side * (reach - 0.03) / 2, 0.0, reach / 3.5, 0.1, 16)
      draw.polygon([tuple(p) for p in pose.to_canvas(inner)], fill=_rgb(skin, 0.75))

  outline = _face_outline(identity, mouth_open)
  for target, colour in ((draw, _rgb(skin)), (mask_draw, 255)):
    _polygon(target, pose, outline, colour, surface=False)
  box_points = pose.to_canvas(pose.outline(outline))

  for target, colour in ((draw, _rgb(identity.hair)), (mask_draw, HAIR_SHADING)):
    _polygon(target, pose, hair_front, colour, surface=False)
  _polygon(draw, pose, _hair_highlight(identity), _rgb(identity.hair, 1.18), surface=False)

  nose = identity.nose_length
  bridge = np.array([[-0.035, -0.1], [0.035, -0.1], [0.05, nose - 0.08], [-0.05, nose - 0.08]])
  _polygon(draw, pose, bridge, _rgb(skin, 1.04), lift=0.08)
  wings = _ellipse(0, nose - 0.04, identity.nose_width, 0.055, 24)
  _polygon(draw, pose, wings, _rgb(skin, 0.9), lift=0.1)
  tip = _ellipse(0, nose - 0.055, identity.nose_width * 0.55, 0.05, 20)
  _polygon(draw, pose, tip, _rgb(skin, 1.05), lift=0.16)
  for side in (-1, 1):
    nostril = _ellipse(side * identity.nose_width * 0.45, nose - 0.015, identity.nose_width * 0.24, 0.018, 12)
    _polygon(draw, pose, nostril, _rgb(skin, 0.4), lift=0.12)

  for side in (-1, 1):
    white, upper_cover, lower_cover, lash, iris, pupil, glint = _eye_shapes(identity, side, eye_open)
    _polygon(draw, pose, white, (235, 232, 228))
    _polygon(draw, pose, iris, _rgb(identity.iris))
    _polygon(draw, pose, pupil, (12, 10, 10))
    _polygon(draw, pose, glint, (250, 250, 250))
    _polygon(draw, pose, upper_cover, _rgb(skin, 0.93))
    _polygon(draw, pose, lower_cover, _rgb(skin))
    _polygon(draw, pose, lash, (25, 18, 15))
    _polygon(draw, pose, _brow(identity, side), _rgb(identity.brows))

  lips, inner, teeth = _mouth_shapes(identity, mouth_open)
  _polygon(draw, pose, lips, _rgb(identity.lips))
  _polygon(draw, pose, inner, _rgb(identity.lips, 0.35) if teeth is not None else _rgb(identity.lips, 0.55))
  if teeth is not None:
    _polygon(draw, pose, teeth, (225, 222, 210))
  return image, mask, pose, box_points


def _gaussian(x, y, center, sx, sy):
  return np.exp(-((x - center[0]) / sx) ** 2 - ((y - center[1]) / sy) ** 2)


def _shade(frame, mask, identity, pose, supersampling, mouth_open):
  """Lambert lighting on the face as an ellipsoid, darker eye sockets and nose sides, rosy cheeks."""
  size = frame.shape[0]
  pixels = (np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).reshape(-1, 2) + 0.5) * supersampling
  x, y = pose.to_face(pixels).T
  u, v = x / (identity.face_width * pose.squeeze), y
  r2 = np.minimum(u * u + v * v, 0.97)
  normal = np.stack([u, v * 0.8, np.sqrt(1 - r2)], 1)
  normal /= np.linalg.norm(normal, axis=1, keepdims=True)
  light = np.clip(normal @ np.asarray(identity.light), 0, 1)
  shade = 0.5 + 0.55 * light
  nose = identity.nose_length
  features = pose.turned([[-identity.eye_spacing, -0.1], [identity.eye_spacing, -0.1], [0, nose - 0.2],
                          [0, 0.68 + 0.15 * mouth_open], [-0.42, 0.25], [0.42, 0.25]])
  for eye in features[:2]:
    shade -= 0.2 * _gaussian(x, y, eye, 0.17, 0.1)
  nose_side = -np.sign(identity.light[0]) or 1.0
  shade -= 0.14 * _gaussian(x, y, features[2] + [nose_side * 0.09, 0], 0.045, 0.2)
  shade += 0.06 * _gaussian(x, y, features[2] + [-nose_side * 0.03, 0], 0.03, 0.2)
  shade -= 0.1 * _gaussian(x, y, features[3], 0.12, 0.035)
  blush = sum(_gaussian(x, y, cheek, 0.13, 0.09) for cheek in features[4:]) * 14.0
  weight = np.asarray(mask, np.float64).reshape(-1) / 255.0
  rgb = frame.reshape(-1, 3).astype(np.float64)
  rgb *= (1 + weight * (shade - 1))[:, None]
  rgb += (weight * blush)[:, None] * np.array([1.0, -0.4, -0.3])
  return np.clip(rgb + 0.5, 0, 255).astype(np.uint8).reshape(frame.shape)


def render_frame(identity: Identity, motion, size: int, background: Image.Image | None = None):
  """One (size, size, 3) uint8 frame of the identity in the pose `motion` (by MOTION_NAMES) and its face box.

  `background` (supersampled canvas size) is shared by a clip's frames; None draws the identity's with seed 0.
  """
  motion = dict(zip(MOTION_NAMES, np.asarray(motion, np.float64)))
  factor = _supersampling(size)
  if background is None:
    background = _background(identity, size * factor, np.random.default_rng(0))
  image, mask, pose, box_points = _draw_person(identity, motion, size * factor, background)
  frame = np.asarray(image.reduce(factor))
  frame = _shade(frame, mask.reduce(factor), identity, pose, factor, motion["mouth_open"])
  return frame, _square_box(box_points / factor)


def _supersampling(size):
  return 4 if size <= 128 else 2


def _square_box(points):
  low, high = points.min(axis=0), points.max(axis=0)
  center, half = (low + high) / 2, (high - low).max() / 2
  return np.concatenate([center - half, center + half]).astype(np.float32)


def generate_clip(identity_seed: int, clip_seed: int, num_frames: int, size: int):
  """frames (T, size, size, 3) uint8, motion (T, M) float32, motion_names (M), boxes (T, 4) float32 (x0, y0, x1, y1)."""
  identity = make_identity(identity_seed)
  rng = np.random.default_rng([identity_seed, clip_seed, 0xC1])
  motion = make_motion(rng, num_frames)
  background = _background(identity, size * _supersampling(size), rng)
  frames, boxes = zip(*(render_frame(identity, row, size, background) for row in motion))
  return np.stack(frames), motion, list(MOTION_NAMES), np.stack(boxes)


def clip_seeds(seed: int, identity: int, clip: int) -> tuple[int, int]:
  """(identity_seed, clip_seed) of clip `clip` of identity `identity` in the dataset made with `seed`."""
  derive = lambda *parts: int(np.random.SeedSequence(parts).generate_state(1)[0])
  return derive(seed, identity), derive(seed, identity, clip + 1)


def num_test_identities(identities: int, test_fraction: float) -> int:
  """How many identities (the last ones) go to test: ceil(test_fraction * identities), at least 1, leaving 1."""
  if identities < 2:
    raise ValueError("a synthetic dataset needs at least 2 identities (one for train, one for test)")
  return min(max(math.ceil(test_fraction * identities), 1), identities - 1)


def write_synthetic_dataset(out_dir, *, identities: int = 8, clips_per_identity: int = 3, frames_per_clip: int = 32,
                            size: int = 256, test_fraction: float = 0.25, seed: int = 0) -> pathlib.Path:
  """Fill `out_dir/clips` (a ClipStore; done clips are kept) and build `out_dir/data`; returns the dataset dir.

  The last `num_test_identities` identities are the test split. A rerun must use the same arguments.
  """
  out_dir = pathlib.Path(out_dir)
  first_test = identities - num_test_identities(identities, test_fraction)
  settings = dict(identities=identities, clips_per_identity=clips_per_identity, frames_per_clip=frames_per_clip,
                  size=size, test_fraction=test_fraction, seed=seed)
  settings_file = out_dir / "synthetic.json"
  if settings_file.is_file() and json.loads(settings_file.read_text()) != settings:
    raise ValueError(f"{out_dir} holds a synthetic dataset made with {settings_file.read_text()}, not {settings}")
  out_dir.mkdir(parents=True, exist_ok=True)
  settings_file.write_text(json.dumps(settings))
  store = ClipStore(out_dir / "clips")
  for identity in range(identities):
    for k in range(clips_per_identity):
      clip_id = f"synth{identity:03d}#clip{k:02d}"
      if store.has(clip_id):
        continue
      frames, motion, names, boxes = generate_clip(*clip_seeds(seed, identity, k), frames_per_clip, size)
      store.write(ClipMeta(clip_id=clip_id, identity=f"synth{identity:03d}", source_path="synthetic",
                           num_frames=frames_per_clip, boxes=boxes.tolist(), fps=FPS, motion=motion.tolist(),
                           motion_names=names, split="test" if identity >= first_test else "train"), frames)
  data_dir = out_dir / "data"
  expected = len(store.clip_ids())
  if (data_dir / DATASET_NAME).exists() and _built_examples(data_dir) == expected:
    return dataset_dir(data_dir)
  return build_dataset(store.root, data_dir, test_fraction=test_fraction)


def _built_examples(data_dir) -> int | None:
  try:
    return sum(len(open_split(data_dir, split)) for split in ("train", "test"))
  except (FileNotFoundError, KeyError):
    return None


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="output directory (clips/ and data/ are written under it)")
  parser.add_argument("--identities", type=int, default=8)
  parser.add_argument("--clips-per-identity", type=int, default=3)
  parser.add_argument("--frames", type=int, default=32)
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--test-fraction", type=float, default=0.25)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  path = write_synthetic_dataset(args.out, identities=args.identities, clips_per_identity=args.clips_per_identity,
                                 frames_per_clip=args.frames, size=args.size, test_fraction=args.test_fraction,
                                 seed=args.seed)
  print(path)
  for split in ("train", "test"):
    source = open_split(path, split)
    identities = {source[i]["identity"] for i in range(len(source))}
    print(f"{split}: {len(source)} clips, {len(identities)} identities, {args.frames} frames of {args.size} px")


if __name__ == "__main__":
  main()
