"""Embedded synthetic hip X-rays: AP pelvis radiographs as PNG files plus a `labels.csv`.

The stand-in for the paper's private set (77 fractured / 147 normal radiographs of 3056x2544 and
2969x2252 pixels). Images are rendered at one fifth of those sizes, 611x509 or 594x450 pixels
(about 0.7 mm per pixel), which keeps generation fast.

Each image is a projection: attenuation = soft tissue (torso, thighs, air at the sides) + bone
(two femora with heads, necks, trochanters and shafts with a dense cortex; acetabula, iliac wings,
pelvic brim, obturator rings, pubic symphysis, sacrum with foramina, lumbar vertebrae) - bowel gas
(loops, bubbly faeces), then a film curve, window, quantum noise, and sometimes collimation edges
and a lead side marker.

Version 5 (the default). Positives carry a femoral neck fracture on one side: the femur cut by a
jagged plane into two rigid fragments that moved the way real ones do. The kinds, and what
separates them from the intact hip:
  - displaced, about 2/3 of positives as in real neck fractures: Garden III (varus, 35%: the
    head tips 12-25 deg, a lucent gap of 0.35-0.5 head radii) and IV (overriding, 30%). Both
    carry the coarse clinical signs at a size that survives the ~4.8x shrink to 128 px full
    (rh, the head radius, is 32 px here, 6.7 px there): the leg shortened (the distal femur and
    greater trochanter 0.5-0.9 rh higher in III, 0.9-1.5 rh in IV: 20-33 mm, 6-10 px at 128 px
    full), adducted 6-12 deg, and turned outwards (the neck foreshortened to 0.45-0.75 of its
    length, the lesser trochanter seen in profile, larger and further medial);
  - subtle: Garden II (undisplaced, 20%: a 3-6 px gap) and I (impacted in valgus, 15%: a
    dense band where the fragments overlap), clear in the crop and barely there at 128 px full.
So the crop helps as in the paper: at 1.4x it shows every kind, the full radiograph mostly the
displaced ones. None of the signs is a threshold: intact legs lie turned outwards by up to 0.9 of
a displaced fracture's rotation (the lesser trochanter's size and place overlap), neck angle,
neck length, shaft tilt and width vary between patients (the two sides of one pelvis share them
up to a quarter of that spread, so one-sided shortening stands out against the other hip, as a
reader sees it), and both classes carry the same fracture-like distractors at the same rates
(drawn from the random stream before the label matters): a bright physeal scar, lucent vascular
channels and Ward's triangle inside the neck that stop at its cortex, the bright arc of the
posterior acetabular wall across the head, and skin folds (a soft-tissue edge with a lucent
crease) across a femoral neck or shaft. The fragments move rather than vanish, so global
statistics (mean, std, percentiles of the image) do not separate the classes (AUC 0.46-0.57 on
1,000 images). The pelvis lies on the film as a standard AP film places it (centred on the
midline, little spread in height, size and roll): the hips stay within about 1-2 px at 128 px full,
where the v3/v4 spread moved them as far as a displaced fracture shortens the leg. Version 5's
design numbers are in `V5`.
`render_hip(..., version=4)` renders version 4 (the same kinds, no shortening or rotation:
learnt from crops, not from full radiographs) and `version=3` version 3 (bit-identical): a thin
lucent line (1.5-2.8 px) with the head fragment displaced 6-14 px, which almost vanishes at
128 px full, and the physeal scar as the only distractor.

`labels.csv` columns: `path,label,x0,y0,x1,y1,side,fracture_x,fracture_y`. The box (pixels,
x1/y1 exclusive) frames the hip joint and femoral head of the fractured side (a random side on
negatives), as the paper's manual crops did; `side` is the patient's side (AP view: the
patient's right is on the image's left); the fracture point is empty on negatives. At 128x128
the full image shrinks about 4.8x, the crop about 1.4x. Labels are exactly balanced (the
paper's cropped sets are). Image i depends only on (seed, i, its label, the version); the folder
is written to a temp dir and renamed, then cached (its name carries the version).
"""

from __future__ import annotations

import csv
import logging
import os
import time

import numpy as np
from PIL import Image

from medjax.data.base import build_folder_atomically, cache_dir

log = logging.getLogger(__name__)

VERSION = 5  # 5: v4 + coarse signs of displaced fractures (shortening, external rotation);
#            4: Garden I-IV fractures, the displaced ones >= 2 px wide at 128 px full, and
#            fracture-like distractors on both classes; 3: thin lines that vanish at 128 px full
N_IMAGES = 1000
SHAPES = ((509, 611), (450, 594))  # (H, W): the paper's two sizes divided by 5
MM_PER_PIXEL = 0.7
COLUMNS = ("path", "label", "x0", "y0", "x1", "y1", "side", "fracture_x", "fracture_y")

_GLYPHS = {"R": ("1110", "1001", "1001", "1110", "1010", "1001", "1001"),
           "L": ("1000", "1000", "1000", "1000", "1000", "1000", "1111")}


def _sigmoid(x):
  return 0.5 * (1.0 + np.tanh(0.5 * x))


def _chord(radius, dist):
  """Path length through a disc (or sphere) of `radius` at distance `dist` from its centre."""
  return 2.0 * np.sqrt(np.maximum(radius * radius - dist * dist, 0.0))


def _shell(radius, dist, cortex, marrow=0.45):
  """Projected bone of a cortical shell around less dense marrow (bright edges, as on films)."""
  inner = np.maximum(radius - cortex, 0.0)
  return _chord(radius, dist) - (1.0 - marrow) * _chord(inner, dist)


def _segment(X, Y, p0, p1):
  """Distance to the segment p0-p1 and the position t in [0, 1] along it."""
  d = np.subtract(p1, p0)
  length2 = float(d @ d)
  t = np.clip(((X - p0[0]) * d[0] + (Y - p0[1]) * d[1]) / length2, 0.0, 1.0)
  return np.hypot(X - p0[0] - t * d[0], Y - p0[1] - t * d[1]), t


def _ellipse_q(X, Y, c, a, b, angle=0.0):
  """Normalised elliptic radius: 1 on the ellipse with semi-axes a, b rotated by `angle`."""
  dx, dy = X - c[0], Y - c[1]
  cs, sn = np.cos(angle), np.sin(angle)
  return np.hypot((dx * cs + dy * sn) / a, (-dx * sn + dy * cs) / b)


def _plate(X, Y, c, a, b, angle, thickness, rim, rim_width):
  """A flat bone seen face-on: uniform plate plus a denser cortical rim along its outline."""
  q = _ellipse_q(X, Y, c, a, b, angle)
  r = 0.5 * (a + b)
  rim_profile = _chord(rim_width, (q - 1.0) * r) / (2 * rim_width)
  return thickness * _sigmoid((1.0 - q) * r / 1.5) + rim * rim_profile


def _smooth_noise(rng, shape, cell) -> np.ndarray:
  """Unit-variance texture with features of about `cell` pixels (bicubic upsampled noise)."""
  h, w = shape
  small = rng.normal(size=(max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
  up = np.asarray(Image.fromarray(small, "F").resize((w + 2 * cell, h + 2 * cell),
                                                     Image.Resampling.BICUBIC))
  up = up[cell:cell + h, cell:cell + w]
  return (up - up.mean()) / (up.std() + 1e-6)


class _Frame:
  """Anatomical frame: origin between the femoral heads, x to the image right, y down."""

  def __init__(self, shape, centre, angle):
    self.shape, self.centre, self.angle = shape, centre, angle
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    cs, sn = np.cos(angle), np.sin(angle)
    dx, dy = xx - centre[0], yy - centre[1]
    self.X, self.Y = dx * cs + dy * sn, -dx * sn + dy * cs

  def to_image(self, p):
    cs, sn = np.cos(self.angle), np.sin(self.angle)
    return (self.centre[0] + p[0] * cs - p[1] * sn, self.centre[1] + p[0] * sn + p[1] * cs)

  def window(self, p, rx, ry=None):
    """Image slices of a rectangle of half-sides rx, ry around anatomical point p (clipped)."""
    x, y = self.to_image(p)
    ry = rx if ry is None else ry
    h, w = self.shape
    ys = slice(int(np.clip(y - ry, 0, h)), int(np.clip(y + ry + 1, 0, h)))
    xs = slice(int(np.clip(x - rx, 0, w)), int(np.clip(x + rx + 1, 0, w)))
    return ys, xs


def _femur(X, Y, f):
  """Projected bone of one proximal femur (union of its parts: max, not sum)."""
  head = _shell(f["rh"], np.hypot(X - f["head"][0], Y - f["head"][1]), 0.12 * f["rh"], 0.5)
  neck_dist, t = _segment(X, Y, f["head"], f["base"])
  neck_r = f["rh"] * (0.62 + 0.3 * ((t - 0.5) / 0.5) ** 2)
  neck = _shell(neck_r, neck_dist, 0.16 * f["rh"])
  q = _ellipse_q(X, Y, f["gt"], 0.8 * f["rh"], 1.1 * f["rh"], f["sigma"] * 0.3)
  gt = 1.5 * f["rh"] * np.sqrt(np.maximum(1 - q * q, 0)) * (0.55 + 0.45 * _sigmoid((q - 0.8) * 12))
  dist, _ = _segment(X, Y, f["shaft_top"], f["shaft_end"])
  shaft = _shell(f["rs"], dist, 0.3 * f["rs"], 0.35)
  if "lt_size" in f:  # v5: rotation of the leg shows the lesser trochanter more or less
    k = f["lt_size"]
    lt_c = (f["lt"][0] - f["sigma"] * f["lt_out"] * f["rh"], f["lt"][1])
    q = _ellipse_q(X, Y, lt_c, 0.45 * k * f["rh"], 0.6 * k * f["rh"])
    lt = 0.8 * np.sqrt(k) * f["rh"] * np.sqrt(np.maximum(1 - q * q, 0))
  else:
    q = _ellipse_q(X, Y, f["lt"], 0.45 * f["rh"], 0.6 * f["rh"])
    lt = 0.8 * f["rh"] * np.sqrt(np.maximum(1 - q * q, 0))
  bone = np.maximum(np.maximum(head, neck), np.maximum(np.maximum(gt, shaft), lt))
  if f["scar"] > 0:  # physeal scar: a faint dense line across the head-neck junction
    s = (X - f["scar_point"][0]) * f["u"][0] + (Y - f["scar_point"][1]) * f["u"][1]
    bone = bone * (1 + f["scar"] * np.exp(-0.5 * (s / f.get("scar_width", 1.2)) ** 2) * (bone > 0))
  if "channel" in f:  # v4: lucencies inside the neck that stop at its cortex
    marrow = _sigmoid((neck_r - 0.16 * f["rh"] - 1.0 - neck_dist) / 1.0)
    if f["channel"] > 0:  # a vascular channel or trabecular gap across the neck
      s = (X - f["channel_point"][0]) * f["channel_normal"][0] \
          + (Y - f["channel_point"][1]) * f["channel_normal"][1]
      near = _sigmoid((0.7 * f["rh"] - np.hypot(X - f["channel_point"][0],
                                                Y - f["channel_point"][1])) / 2)
      line = np.exp(-0.5 * (s / f["channel_width"]) ** 2)
      bone = bone * (1 - f["channel"] * line * marrow * near)
    if f["ward"] > 0:  # Ward's triangle: a lucent patch between the trabecular groups
      q = _ellipse_q(X, Y, f["ward_centre"], 0.4 * f["rh"], 0.28 * f["rh"],
                     np.arctan2(f["u"][1], f["u"][0]))
      bone = bone * (1 - f["ward"] * _sigmoid((1 - q) * 5) * marrow)
  return bone


def _float32(params: dict) -> dict:
  """Parameters as float32 (numpy 2 would turn float32 images float64 on float64 scalars)."""
  return {k: np.float32(v) if np.ndim(v) == 0 else np.asarray(v, np.float32)
          for k, v in params.items()}


def _femur_params(rng, sigma, hx, rh, height, version, patient=None):
  """One femur; `patient` (v5): the patient's own shape, which both sides share up to
  `V5["asymmetry"]` of the population's spread (a pelvis is nearly symmetric)."""
  def own(name, drawn):
    return drawn if patient is None else patient[name] + V5["asymmetry"] * (drawn - patient[name])

  theta = np.deg2rad(own("theta", rng.uniform(32, 45)))  # neck below the horizontal (~130 deg)
  u = np.array([sigma * np.cos(theta), np.sin(theta)])
  head = np.array([sigma * hx, 0.0]) + rng.normal(0, 1.5, 2)
  neck_len = rh * own("neck", rng.uniform(2.2, 2.5))
  base = head + neck_len * u
  tilt = np.deg2rad(own("tilt", rng.uniform(5, 11)))
  v = np.array([-sigma * np.sin(tilt), np.cos(tilt)])  # shaft axis, slightly medial going down
  rs = rh * own("rs", rng.uniform(0.68, 0.78))
  f = {
      "sigma": sigma, "rh": rh, "head": head, "base": base, "u": u, "neck_len": neck_len,
      "gt": base + np.array([sigma * 0.45 * rh, -0.4 * rh]),
      "lt": base + 1.7 * rh * v - np.array([sigma * (rs + 0.1 * rh), 0.0]),
      "shaft_top": base + np.array([sigma * 0.15 * rh, 0.0]),
      "shaft_end": base + 2 * height * v, "rs": rs,
      "scar": rng.uniform(0.08, 0.2) if rng.random() < 0.6 else 0.0,
      "scar_point": head + rng.uniform(0.85, 1.0) * rh * u,
  }
  if version >= 4:
    f.update(_femur_distractors(rng, f))
  if version >= 5:
    f.update(_rotation(rng.uniform(*V5["normal_rotation"])))
  return _float32(f)


def _rotation(p):
  """v5: the lesser trochanter of a leg turned outwards by `p` (0: neutral, 1: about 45 deg):
  seen more in profile, larger and further medial."""
  return {"lt_size": 1.0 + V5["lt_gain"] * p, "lt_out": V5["lt_shift"] * p}


# v5 design: the coarse signs of displaced (Garden III/IV) fractures, sized to survive 128 px
# full images (rh, the head radius, is 32 px, about 6.7 px at 128 px full).
V5 = {
    "kind_p": (0.35, 0.3, 0.2, 0.15),    # varus (III), overriding (IV), undisplaced (II), impacted (I)
    "normal_rotation": (0.0, 0.9),       # external rotation of an intact leg (positioning)
    "fracture_rotation": (0.6, 1.4),     # external rotation of the distal fragment, displaced
    "lt_gain": 0.6, "lt_shift": 0.35,    # lesser trochanter: size and medial shift per rotation
    "varus_rise": (0.5, 0.9),            # shortening (head radii) of Garden III
    "override_rise": (0.9, 1.5),         # of Garden IV: 20-33 mm, 6-10 px at 128 px full
    "adduction": (6.0, 12.0),            # deg, the distal fragment about the lesser trochanter
    "foreshortening": (0.45, 0.75),      # projected/true neck length of the distal fragment
    "asymmetry": 0.25,                   # left-right spread of an intact pelvis / the population's
    # Positioning, as a standard AP pelvis film is centred and collimated (v3/v4: 12, 0.53-0.6,
    # 0.9-1.1, 2; with their spread the hips wander 3-7 px at 128 px full, as far as a displaced
    # fracture shortens the leg, and a fully connected net (the DBN) stayed at chance):
    "centre_x_sd": 4.0,                  # px (at 611 wide) left-right off the film's centre
    "centre_y": (0.555, 0.575),          # head centres' height, a fraction of the film's height
    "scale": (0.97, 1.03),               # the patient's size on the film relative to the reference
    "roll_sd": 1.0,                      # deg
}

_V4_PLACE = {"centre_x_sd": 12.0, "centre_y": (0.53, 0.6), "scale": (0.9, 1.1), "roll_sd": 2.0}


def _femur_distractors(rng, f):
  """v4: fracture-like lines inside one femur, drawn alike for both labels and both sides."""
  rh, u = f["rh"], f["u"]
  perp = f["sigma"] * np.array([-u[1], u[0]])  # across the neck, pointing down
  turn = np.deg2rad(rng.uniform(-30, 30))
  return {
      "scar": rng.uniform(0.1, 0.3) if rng.random() < 0.5 else 0.0,  # physeal scar, bright
      "scar_point": f["head"] + rng.uniform(0.8, 1.05) * rh * u,
      "scar_width": rng.uniform(1.0, 2.5),
      "channel": rng.uniform(0.35, 0.7) if rng.random() < 0.5 else 0.0,
      "channel_point": f["head"] + rng.uniform(0.95, 2.0) * rh * u,
      "channel_normal": np.cos(turn) * u + np.sin(turn) * perp,
      "channel_width": rng.uniform(1.2, 3.5),
      "ward": rng.uniform(0.15, 0.4) if rng.random() < 0.6 else 0.0,
      "ward_centre": f["head"] + rng.uniform(1.5, 1.9) * rh * u + rng.uniform(0.0, 0.2) * rh * perp,
  }


def _fracture_params(rng, f):
  """Fracture plane, gap and displacement of the head fragment; drawn for every image alike."""
  t = rng.uniform(1.05, 1.6) * f["rh"]  # from the head centre: subcapital to transcervical
  point = f["head"] + t * f["u"]
  phi = np.deg2rad(rng.normal(0, 15))
  cs, sn = np.cos(phi), np.sin(phi)
  normal = np.array([cs * f["u"][0] - sn * f["u"][1], sn * f["u"][0] + cs * f["u"][1]])
  psi = rng.uniform(-np.pi, np.pi)
  perp = np.array([-f["u"][1], f["u"][0]])
  shift = rng.uniform(6.0, 14.0) * (np.cos(psi) * f["u"] + np.sin(psi) * perp)
  return _float32({
      "point": point, "normal": normal, "shift": shift, "tilt": np.deg2rad(rng.normal(0, 8)),
      "gap": rng.uniform(0.6, 0.95), "width": rng.uniform(1.5, 2.8),
      "wiggle": rng.uniform(0.3, 0.9), "wiggle_freq": rng.uniform(0.15, 0.4),
      "wiggle_phase": rng.uniform(0, 2 * np.pi),
  })


def _fractured_femur(X, Y, f, fr):
  """The femur with the head fragment moved: distal part + displaced proximal part + lucent line."""
  p, n = fr["point"], fr["normal"]
  along_x, along_y = -n[1], n[0]

  def side(Xs, Ys):
    """Signed distance to the (jagged) fracture plane, and the lucent line across the neck only."""
    along = (Xs - p[0]) * along_x + (Ys - p[1]) * along_y
    wiggle = fr["wiggle"] * np.sin(fr["wiggle_freq"] * along + fr["wiggle_phase"])
    s = (Xs - p[0]) * n[0] + (Ys - p[1]) * n[1] + wiggle
    return s, np.exp(-0.5 * (s / fr["width"]) ** 2) * _sigmoid(0.85 * f["rh"] - np.abs(along))

  s, line = side(X, Y)
  distal = _femur(X, Y, f) * _sigmoid(s / 0.4)
  cs, sn = np.cos(-fr["tilt"]), np.sin(-fr["tilt"])  # image point -> fragment's own frame
  dx, dy = X - p[0] - fr["shift"][0], Y - p[1] - fr["shift"][1]
  Xf, Yf = p[0] + dx * cs - dy * sn, p[1] + dx * sn + dy * cs
  s_frag, line_frag = side(Xf, Yf)
  proximal = _femur(Xf, Yf, f) * _sigmoid(-s_frag / 0.4)
  return (distal + proximal) * (1 - fr["gap"] * np.minimum(line + line_frag, 1.0))


FRACTURE_KINDS = ("varus", "overriding", "undisplaced", "impacted")  # v4: Garden III, IV, II, I


def _turn(X, Y, centre, angle):
  """Points rotated by `angle` about `centre`."""
  cs, sn = np.cos(angle), np.sin(angle)
  dx, dy = X - centre[0], Y - centre[1]
  return centre[0] + dx * cs - dy * sn, centre[1] + dx * sn + dy * cs


def _fracture_params_v4(rng, f, version=4):
  """v4: a fracture plane across the neck and how the fragments moved; drawn for every image.

  Two rigid fragments. They part by `gap` along the plane's normal (half each: the head into its
  socket, the distal femur away from it; an overlap when negative); the distal femur (neck stump,
  trochanters, shaft) slides up along the plane, rises (overriding) and turns about the lesser
  trochanter (adduction); the head turns about its centre (varus; valgus when impacted). The
  directions are those of displaced fractures, the same in every image; the kinds, Garden III
  (varus) and IV (overriding) for 60% and the subtler II (undisplaced) and I (impacted) for 40%,
  show the fracture in the full radiograph or, for the subtle ones, mainly in the crop. v5
  (`V5`): 65% displaced, and those shortened, adducted and turned outwards (the coarse signs).
  """
  rh, u, sigma = f["rh"], f["u"], f["sigma"]
  t = rng.uniform(1.0, 1.7) * rh  # from the head centre: subcapital to basicervical
  phi = np.deg2rad(rng.normal(0, 15))
  cs, sn = np.cos(phi), np.sin(phi)
  normal = np.array([cs * u[0] - sn * u[1], sn * u[0] + cs * u[1]])
  up = -np.sign(normal[0]) * np.array([-normal[1], normal[0]])  # along the plane, upwards
  kind_p = (0.3, 0.3, 0.2, 0.2) if version < 5 else V5["kind_p"]
  kind = FRACTURE_KINDS[int(rng.choice(len(FRACTURE_KINDS), p=kind_p))]
  a, b, c, d = rng.uniform(size=4)
  rise = 0.0
  rotation = {}
  if version >= 5:  # the same draws for every kind and label
    e, g, k, m = rng.uniform(size=4)
    if kind in ("varus", "overriding"):
      lo, hi = V5["varus_rise" if kind == "varus" else "override_rise"]
      rise = (lo + (hi - lo) * e) * rh
      lo, hi = V5["fracture_rotation"]
      rotation = _rotation(lo + (hi - lo) * g)
      lo, hi = V5["adduction"]
      adduction = lo + (hi - lo) * k
      lo, hi = V5["foreshortening"]
      rotation["neck_short"] = lo + (hi - lo) * m
  if kind == "varus":  # the head tips into varus, a wedge-shaped gap opens
    gap, slide, head_turn, turn = (0.35 + 0.15 * a) * rh, 0.2 * b * rh, 12 + 13 * c, 2 + 3 * d
  elif kind == "overriding":  # the distal femur rides up over the head fragment: shortened leg
    gap, slide, head_turn, turn = 0.0, 0.0, 8 * c, 3 + 5 * d
    rise = (0.4 + 0.4 * b) * rh if version < 5 else rise
  elif kind == "undisplaced":
    gap, slide, head_turn, turn = (0.1 + 0.1 * a) * rh, 0.12 * b * rh, 6 * c, d
  else:  # impacted in valgus: the fragments overlap into a dense band
    gap, slide, head_turn, turn = -(0.1 + 0.15 * a) * rh, 0.1 * b * rh, -(5 + 10 * c), -d
  if rotation:  # v5, displaced: adducted
    turn = adduction
  return _float32({**rotation,
      "kind": FRACTURE_KINDS.index(kind), "point": f["head"] + t * u, "normal": normal,
      "gap": gap, "shift": 0.5 * gap * normal + slide * up - np.array([0.0, rise]),
      "head_shift": -0.5 * gap * normal,
      "head_turn": np.deg2rad(sigma * head_turn), "turn": np.deg2rad(sigma * turn),
      "reach": np.hypot(t, 1.05 * rh) + 2.0,
      "wiggle": rng.uniform(0.4, 1.5), "wiggle_freq": rng.uniform(0.12, 0.3),
      "wiggle_phase": rng.uniform(0, 2 * np.pi),
  })


def _fractured_femur_v4(X, Y, f, fr):
  """The femur in two rigid fragments: the head (turned about its centre) and the rest (moved)."""
  p, n = fr["point"], fr["normal"]

  def head_side(Xs, Ys):
    """1 on the head fragment: proximal to the (jagged) plane and near the head; 0 elsewhere."""
    along = (Xs - p[0]) * -n[1] + (Ys - p[1]) * n[0]
    wiggle = fr["wiggle"] * (np.sin(fr["wiggle_freq"] * along + fr["wiggle_phase"])
                             + 0.5 * np.sin(2.3 * fr["wiggle_freq"] * along))
    s = (Xs - p[0]) * n[0] + (Ys - p[1]) * n[1] + wiggle
    near = _sigmoid(fr["reach"] - np.hypot(Xs - f["head"][0], Ys - f["head"][1]))
    return _sigmoid(-s / 0.5) * near

  Xh, Yh = _turn(X - fr["head_shift"][0], Y - fr["head_shift"][1], f["head"], -fr["head_turn"])
  Xd, Yd = _turn(X - fr["shift"][0], Y - fr["shift"][1], f["lt"], -fr["turn"])
  fd = f
  if "lt_size" in fr:  # v5, displaced: the distal fragment turned outwards
    fd = dict(f, lt_size=fr["lt_size"], lt_out=fr["lt_out"])
    # The neck, seen more end-on, is foreshortened towards the trochanters: points on its head
    # side of the base are read from further along it.
    a = np.maximum((Xd - f["base"][0]) * -f["u"][0] + (Yd - f["base"][1]) * -f["u"][1], 0)
    stretch = (1 / fr["neck_short"] - 1) * a
    Xd, Yd = Xd - stretch * f["u"][0], Yd - stretch * f["u"][1]
  return _femur(Xh, Yh, f) * head_side(Xh, Yh) + _femur(Xd, Yd, fd) * (1 - head_side(Xd, Yd))


def _skin_folds(rng, frame, femora, rh) -> tuple[np.ndarray, int]:
  """v4: 0-2 skin folds as (attenuation, count), drawn alike for both labels.

  A fold is a soft-tissue edge ending in a thin lucent crease, a long arc across a femoral neck or
  shaft and the soft tissue around it: a lucent line over bone that breaks no cortex.
  """
  folds = np.zeros(frame.shape, np.float32)
  n = int(rng.integers(0, 3))
  for _ in range(n):
    f = femora[int(rng.choice([-1, 1]))]
    if rng.random() < 0.6:
      anchor = f["head"] + rng.uniform(0.8, 2.2) * rh * f["u"]
    else:
      anchor = f["base"] + np.array([0.0, rng.uniform(1.0, 6.0) * rh])
    angle, radius = rng.uniform(0, np.pi), rng.uniform(5, 20) * rh
    centre = anchor + radius * np.array([-np.sin(angle), np.cos(angle)])
    dx, dy = frame.X - centre[0], frame.Y - centre[1]
    d = np.hypot(dx, dy) - radius  # < 0 on the thick side of the fold
    ax, ay = anchor - centre
    pos = radius * np.arctan2(dx * ay - dy * ax, dx * ax + dy * ay)
    taper = _sigmoid((rng.uniform(4, 10) * rh / 2 - np.abs(pos)) / 8)
    step, decay = rng.uniform(0.03, 0.1), rng.uniform(0.5, 2.0) * rh
    depth, width = rng.uniform(0.1, 0.35), rng.uniform(1.2, 3.5)
    folds += taper * (step * _sigmoid(-d / 1.5) * np.exp(np.minimum(d, 0) / decay)
                      - depth * np.exp(-0.5 * (d / width) ** 2))
  return folds, n


def _gas(rng, frame, gas, centre, radius, depth, lobes=0.25):
  ys, xs = frame.window(centre, radius * 1.6 + 3)
  X, Y = frame.X[ys, xs], frame.Y[ys, xs]
  q = _ellipse_q(X, Y, centre, radius * rng.uniform(0.6, 1.0), radius, rng.uniform(0, np.pi))
  phi = np.arctan2(Y - centre[1], X - centre[0])
  q = q / (1 + lobes * rng.uniform(0, 1) * np.sin(rng.integers(2, 6) * phi + rng.uniform(0, 6.3)))
  gas[ys, xs] += depth * _sigmoid((1 - q) * radius / 1.2)


def _marker(rng, image, letter):
  scale = rng.integers(3, 5)
  glyph = np.array([[c == "1" for c in row] for row in _GLYPHS[letter]], np.float32)
  glyph = np.kron(glyph, np.ones((scale, scale), np.float32))
  h, w = glyph.shape
  y = rng.integers(8, 40)
  x = rng.integers(8, 50) if rng.random() < 0.5 else image.shape[1] - w - rng.integers(8, 50)
  box = image[y - 3:y + h + 3, x - 3:x + w + 3]
  box[...] = np.maximum(box, 0.55)
  image[y:y + h, x:x + w] = np.maximum(image[y:y + h, x:x + w], 0.97 * glyph)


def _paint(canvas, frame, centre, rx, fn, ry=None) -> None:
  """canvas += fn(X, Y) in a window around the anatomical point `centre` (no full-image ops)."""
  ys, xs = frame.window(centre, rx, ry)
  if ys.stop > ys.start and xs.stop > xs.start:
    canvas[ys, xs] += fn(frame.X[ys, xs], frame.Y[ys, xs])


def render_hip(rng: np.random.Generator, positive: bool, shape: tuple[int, int] | None = None,
               version: int = VERSION):
  """One radiograph as float32 [H, W] in [0, 1], and its metadata (box, side, fracture point).

  The random stream is consumed identically for both labels, so the same `rng` state rendered as
  positive and as negative gives the same patient with and without the fracture. `version` 3
  renders the previous generator (thin fracture lines, no distractors but the physeal scar).
  """
  if version not in (3, 4, 5):
    raise ValueError(f"synthetic hip version must be 3, 4 or 5, got {version}")
  if shape is None:
    shape = SHAPES[rng.integers(len(SHAPES))]
  h, w = shape
  place = V5 if version >= 5 else _V4_PLACE
  scale = float(rng.uniform(*place["scale"])) * w / 611
  rh = 32.0 * scale                       # femoral head radius: ~22 mm
  hx = rh * float(rng.uniform(3.8, 4.3))  # half the distance between the head centres
  centre = (w / 2 + float(rng.normal(0, place["centre_x_sd"])),
            h * float(rng.uniform(*place["centre_y"])))
  frame = _Frame(shape, centre, np.deg2rad(float(rng.normal(0, place["roll_sd"]))))
  X, Y = frame.X, frame.Y

  # Soft tissue: torso above the perineum, two thighs below, air at the sides if slim.
  torso_a = hx + rh * float(rng.uniform(2.6, 4.5))
  torso = np.sqrt(np.clip(1 - (X / torso_a) ** 2, 0, 1))
  thighs = np.zeros(shape, np.float32)
  for sigma in (-1, 1):
    a = rh * float(rng.uniform(2.6, 3.4))
    xc = sigma * (hx + 0.5 * rh)
    thighs = np.maximum(thighs, 0.85 * np.sqrt(np.clip(1 - ((X - xc) / a) ** 2, 0, 1)))
  w_torso = _sigmoid(-(Y - rh * float(rng.uniform(2.8, 3.6))) / (0.5 * rh))
  soft = w_torso * torso + (1 - w_torso) * np.maximum(thighs, 0.25 * torso)

  # Pelvis and spine, each part painted in its own window.
  bone = np.zeros(shape, np.float32)
  inlet = ((0.0, -0.6 * rh), hx - 1.4 * rh, 2.1 * rh)

  def outside_inlet(Xw, Yw):
    return _sigmoid((_ellipse_q(Xw, Yw, *inlet) - 1.0) * 2 * rh / 1.5)

  femora, fractures = {}, {}
  distractors = dict.fromkeys(("scar", "channel", "ward", "wall", "fold"), 0)  # v4, both labels
  patient = None
  if version >= 5:  # the femoral shape both sides share
    patient = {"theta": rng.uniform(32, 45), "neck": rng.uniform(2.2, 2.5),
               "tilt": rng.uniform(5, 11), "rs": rng.uniform(0.68, 0.78)}
  for sigma in (-1, 1):
    f = _femur_params(rng, sigma, hx, rh, h, version, patient)
    femora[sigma] = f
    for name in ("scar", "channel", "ward"):
      distractors[name] += int(f.get(name, 0) > 0)
    fractures[sigma] = (_fracture_params(rng, f) if version < 4 else
                        _fracture_params_v4(rng, f, version))
    head = f["head"]
    wing_c = (sigma * (hx + 0.1 * rh), -3.0 * rh)
    wing_angle = sigma * np.deg2rad(float(rng.uniform(10, 25)))
    _paint(bone, frame, wing_c, 2.8 * rh, lambda Xw, Yw: _plate(
        Xw, Yw, wing_c, 2.6 * rh, 2.2 * rh, wing_angle, 0.3 * rh, 0.45 * rh, 0.2 * rh)
        * _sigmoid((-Yw - 1.0 * rh) / 3) * outside_inlet(Xw, Yw))
    body_c = (head[0] - sigma * 0.2 * rh, head[1] - 1.2 * rh)
    _paint(bone, frame, body_c, 1.7 * rh, lambda Xw, Yw: _plate(
        Xw, Yw, body_c, 1.5 * rh, 1.2 * rh, 0, 0.5 * rh, 0.2 * rh, 0.2 * rh) * outside_inlet(Xw, Yw))
    _paint(bone, frame, head, 1.3 * rh, lambda Xw, Yw: (Yw < head[1] - 0.1 * rh) * 2.5 * _chord(
        0.09 * rh, np.hypot(Xw - head[0], Yw - head[1]) - 1.1 * rh))  # acetabular sourcil
    ring_c = (sigma * 0.5 * hx, 1.75 * rh)
    _paint(bone, frame, ring_c, 1.4 * rh, lambda Xw, Yw: 0.9 * _chord(  # pubic and ischial rami
        0.3 * rh, (_ellipse_q(Xw, Yw, ring_c, 0.95 * rh, 0.7 * rh, sigma * 0.3) - 1.0) * 0.85 * rh))
    tuber_c = (sigma * 0.6 * hx, 2.6 * rh)
    _paint(bone, frame, tuber_c, 0.8 * rh, lambda Xw, Yw: _plate(
        Xw, Yw, tuber_c, 0.6 * rh, 0.5 * rh, 0, 0.5 * rh, 0.2 * rh, 0.2 * rh))
    pubis_c = (sigma * 0.35 * rh, 1.7 * rh)
    _paint(bone, frame, pubis_c, 0.8 * rh, lambda Xw, Yw: _plate(
        Xw, Yw, pubis_c, 0.32 * rh, 0.6 * rh, 0, 0.6 * rh, 0.2 * rh, 0.15 * rh))
    if version >= 4 and rng.random() < 0.7:  # posterior acetabular wall: a bright arc over the head
      distractors["wall"] += 1
      wall_c = head + np.array([sigma * rng.uniform(0.1, 0.4), rng.uniform(-0.2, 0.2)]) * rh
      wall_r, wall_k = rng.uniform(0.95, 1.2) * rh, rng.uniform(1.0, 2.0)
      _paint(bone, frame, head, 1.6 * rh, lambda Xw, Yw: wall_k * _chord(
          0.07 * rh, np.hypot(Xw - wall_c[0], Yw - wall_c[1]) - wall_r)
          * _sigmoid(((Xw - wall_c[0]) * sigma + 0.3 * rh) / 2))
  _paint(bone, frame, inlet[0], inlet[1] + 0.3 * rh, lambda Xw, Yw: (Yw < 0.3 * rh) * 3.0 * _chord(
      0.08 * rh, (_ellipse_q(Xw, Yw, *inlet) - 1.0) * 0.5 * (inlet[1] + inlet[2])))  # pelvic brim

  def sacrum(Xw, Yw):
    half = np.interp(Yw, [-4.6 * rh, -0.7 * rh], [1.9 * rh, 0.4 * rh]).astype(np.float32)
    body = 0.6 * rh * _sigmoid((half - np.abs(Xw)) / 1.5) * _sigmoid((Yw + 4.6 * rh) / 1.5) \
        * _sigmoid((-0.7 * rh - Yw) / 1.5)
    for k in range(4):  # sacral foramina
      for sgn in (-1, 1):
        hole = (sgn * (0.75 - 0.1 * k) * rh, (-3.8 + 0.75 * k) * rh)
        q = _ellipse_q(Xw, Yw, hole, 0.2 * rh, 0.17 * rh)
        body = body * (1 - 0.5 * _sigmoid((1 - q) * 4))
    return body

  _paint(bone, frame, (0.0, -2.65 * rh), 2.1 * rh, sacrum)
  for k in range(3):  # lumbar vertebral bodies with transverse processes, up the image
    top = -4.9 * rh - (k + 1) * 1.75 * rh
    vc, tc = (0.0, top + 0.75 * rh), (0.0, top + 0.55 * rh)
    _paint(bone, frame, vc, 1.6 * rh, lambda Xw, Yw: 0.8 * rh * _sigmoid(
        (1.45 * rh - np.abs(Xw)) / 1.5) * _sigmoid((0.65 * rh - np.abs(Yw - vc[1])) / 1.5))
    _paint(bone, frame, tc, 2.7 * rh, lambda Xw, Yw: _plate(
        Xw, Yw, tc, 2.6 * rh, 0.22 * rh, 0, 0.25 * rh, 0.1 * rh, 0.1 * rh))

  # Femora (the fractured one is re-rendered around its head: the rest is unchanged).
  fracture_side = int(rng.choice([-1, 1]))
  for sigma in (-1, 1):
    f = femora[sigma]
    hx_img, hy_img = frame.to_image(f["head"])
    ex_img, _ = frame.to_image(f["head"] + np.array([sigma * 1.6 * rh, float(h)]))
    ys = slice(max(0, int(hy_img - (1.3 if version < 5 else 2.2) * rh)), h)
    xs = slice(max(0, int(min(hx_img, ex_img) - 3.2 * rh)),
               min(w, int(max(hx_img, ex_img) + 3.2 * rh)))
    if version >= 4 and positive and sigma == fracture_side:
      bone[ys, xs] += _fractured_femur_v4(X[ys, xs], Y[ys, xs], f, fractures[sigma])
      continue
    bone[ys, xs] += _femur(X[ys, xs], Y[ys, xs], f)
    if positive and sigma == fracture_side:
      ys, xs = frame.window(f["head"], 1.15 * (f["rh"] + f["neck_len"]))
      Xw, Yw = X[ys, xs], Y[ys, xs]
      bone[ys, xs] += _fractured_femur(Xw, Yw, f, fractures[sigma]) - _femur(Xw, Yw, f)

  # Texture: trabeculae in bone, bowel gas and faeces in the abdomen, phleboliths in the pelvis.
  bone *= 1 + 0.07 * _smooth_noise(rng, shape, 3) + 0.06 * _smooth_noise(rng, shape, 10)
  gas = np.zeros(shape, np.float32)
  n_gas = rng.integers(6, 18)
  placed = 0
  while placed < n_gas:
    c = (float(rng.uniform(-0.85, 0.85)) * torso_a, float(rng.uniform(-centre[1], 1.0 * rh)))
    if not (c[1] < -1.6 * rh or (abs(c[0]) < hx - 1.8 * rh and c[1] < 1.0 * rh)):
      continue  # gas stays in the abdomen and the midline of the pelvis, off the hips
    placed += 1
    if rng.random() < 0.3:  # a loop: a chain of overlapping blobs
      step = rng.normal(0, 1, 2)
      for _ in range(rng.integers(3, 7)):
        _gas(rng, frame, gas, c, rh * rng.uniform(0.2, 0.4), rng.uniform(0.15, 0.35), 0.1)
        step = 0.7 * step + 0.5 * rng.normal(0, 1, 2)
        c = (c[0] + step[0] * 0.3 * rh, c[1] + step[1] * 0.3 * rh)
    else:
      _gas(rng, frame, gas, c, rh * rng.uniform(0.15, 0.7), rng.uniform(0.15, 0.45))
  for _ in range(rng.integers(0, 3)):  # bubbly faeces
    c = np.array([rng.uniform(-hx, hx), rng.uniform(-5 * rh, -2 * rh)])
    for _ in range(rng.integers(15, 35)):
      bubble = c + rng.normal(0, 0.5 * rh, 2)
      _gas(rng, frame, gas, bubble, rng.uniform(1.5, 3.5), rng.uniform(0.1, 0.3))
  for _ in range(rng.integers(0, 4)):
    c = (float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.55)) * hx, float(rng.uniform(0.0, 1.4)) * rh)
    r = float(rng.uniform(2.0, 3.5))
    _paint(bone, frame, c, 6, lambda Xw, Yw: 2 * _shell(r, np.hypot(Xw - c[0], Yw - c[1]), 1.0, 0.3))

  attenuation = float(rng.uniform(0.55, 0.8)) * soft * (1 - np.minimum(gas, 0.8)) \
      + float(rng.uniform(0.6, 0.8)) * bone / rh
  if version >= 4:
    folds, distractors["fold"] = _skin_folds(rng, frame, femora, rh)
    attenuation += folds
  image = 1 - np.exp(-attenuation)
  lo, hi = rng.uniform(0.0, 0.1), rng.uniform(0.8, 0.95)
  image = np.clip((image - lo) / (hi - lo), 0, 1) ** rng.uniform(0.8, 1.25)
  image = image + rng.uniform(0.01, 0.025) * rng.normal(size=shape).astype(np.float32)
  if rng.random() < 0.3:  # collimation: unexposed (white) bands along some edges
    for edge in np.flatnonzero(rng.random(4) < 0.5):
      width = rng.integers(4, 25)
      band = [np.s_[:width, :], np.s_[-width:, :], np.s_[:, :width], np.s_[:, -width:]][edge]
      image[band] = 0.93 + 0.02 * rng.normal(size=image[band].shape)
  letter = "R" if rng.random() < 0.5 else "L"
  if rng.random() < 0.7:
    _marker(rng, image, letter)

  # Crop box: a square-ish frame of the hip joint and femoral head, like a manual crop.
  random_side = int(rng.choice([-1, 1]))  # drawn for both labels: the same stream either way
  box_side = fracture_side if positive else random_side
  f = femora[box_side]
  bx, by = frame.to_image(f["head"] + 0.35 * f["neck_len"] * f["u"] + rng.normal(0, 0.12 * rh, 2))
  bw, bh = (int(round(2 * rh * rng.uniform(2.5, 3.0))) for _ in range(2))
  x0 = int(np.clip(round(bx - bw / 2), 0, w - bw))
  y0 = int(np.clip(round(by - bh / 2), 0, h - bh))
  fracture = frame.to_image(fractures[fracture_side]["point"]) if positive else None
  info = {"box": (x0, y0, x0 + bw, y0 + bh), "side": "right" if box_side < 0 else "left",
          "fracture": None if fracture is None else tuple(float(v) for v in fracture),
          "head": tuple(float(v) for v in frame.to_image(f["head"])), "head_radius": rh}
  if version >= 4:
    fr = fractures[fracture_side]
    info["fracture_kind"] = FRACTURE_KINDS[int(fr["kind"])] if positive else None
    info["fracture_gap"] = float(fr["gap"]) if positive else None  # pixels, < 0: overlap
    shift = np.hypot(*(fr["shift"] - fr["head_shift"]))  # of the fragments, at their centres
    info["fracture_shift"] = float(shift) if positive else None
    if version >= 5:  # pixels the distal femur moved up (the shortening), and its rotation
      info["fracture_rise"] = float(-fr["shift"][1]) if positive else None
      info["fracture_rotation"] = float(fr.get("neck_short", 1.0)) if positive else None
    info["distractors"] = distractors
  return np.clip(image, 0, 1).astype(np.float32), info


def balanced_labels(n: int, seed: int) -> np.ndarray:
  """Exactly half positive (rounded down), in a seeded random order."""
  labels = np.zeros(n, np.int32)
  labels[:n // 2] = 1
  return np.random.default_rng([seed, n, 0x41B]).permutation(labels)


def _render_range(root: str, seed: int, labels: np.ndarray, start: int,
                  version: int = VERSION) -> list[tuple]:
  """Renders and saves images start..start+len(labels)-1; returns their labels.csv rows."""
  rows = []
  for i, label in enumerate(labels, start):
    image, info = render_hip(np.random.default_rng([seed, i, version]), bool(label),
                             version=version)
    rel = f"images/hip_{i:04d}.png"
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(os.path.join(root, rel))
    fx, fy = ("", "") if info["fracture"] is None else (f"{v:.1f}" for v in info["fracture"])
    rows.append((rel, int(label), *info["box"], info["side"], fx, fy))
  return rows


def _write_folder(root: str, n: int, seed: int, workers: int = 0, chunk: int = 25,
                  version: int = VERSION) -> None:
  """Images in chunks over `workers` processes (0: one per core, up to 8), progress logged."""
  os.makedirs(os.path.join(root, "images"))
  labels = balanced_labels(n, seed)
  starts = list(range(0, n, chunk))
  workers = min(workers or os.cpu_count() or 1, 8, len(starts))
  rows, done, start, last_log = [], 0, time.perf_counter(), time.perf_counter()

  def progress(k: int) -> None:
    nonlocal done, last_log
    done += k
    now = time.perf_counter()
    if now - last_log > 10 and done < n:
      rate = done / (now - start)
      log.info("synthetic hip X-rays: %d/%d (%.0f/s, about %.0f s left)", done, n, rate,
               (n - done) / rate)
      last_log = now

  if workers <= 1:
    for s in starts:
      rows += _render_range(root, seed, labels[s:s + chunk], s, version)
      progress(len(labels[s:s + chunk]))
  else:
    import multiprocessing
    import sys
    from concurrent import futures
    ctx = multiprocessing.get_context("spawn" if "jax" in sys.modules else "fork")
    with futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
      jobs = [pool.submit(_render_range, root, seed, labels[s:s + chunk], s, version)
              for s in starts]
      for job in futures.as_completed(jobs):
        progress(len(job.result()))
      for job in jobs:  # in image order
        rows += job.result()
  with open(os.path.join(root, "labels.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    writer.writerows(rows)


def generate_hip_folder(root: str, n: int = N_IMAGES, seed: int = 0, *,
                        version: int = VERSION) -> str:
  """Writes n synthetic radiographs + labels.csv to `root` (atomically); returns `root`.

  An existing complete folder is kept as is.
  """
  def write(folder: str) -> None:
    start = time.perf_counter()
    _write_folder(folder, n, seed, version=version)
    log.info("generated %d synthetic hip X-rays (v%d) in %.1f s", n, version,
             time.perf_counter() - start)

  return build_folder_atomically(root, "labels.csv", write)


def hip_root(n: int = N_IMAGES, seed: int = 0, *, directory: str | None = None,
             version: int = VERSION) -> str:
  """Path of the cached synthetic hip X-ray folder, generated on first use."""
  parent = directory or cache_dir()
  return generate_hip_folder(os.path.join(parent, f"hip_synthetic_v{version}_s{seed}_n{n}"), n,
                             seed, version=version)
