"""Inpainting holes: free-form brush strokes and boxes (in the spirit of the irregular masks of DeepFill v2,
arXiv 1806.03589, and LaMa's wide masks, arXiv 2109.07161), filled with a constant. Scale 1.

The official IR-SDE / Refusion inpainting fills holes with 1 (white): lq = keep * hq + (1 - keep), keep in {0, 1}
(`mask_to` in its deg_utils.py). DiffIR's inpainting (LaMa's trainer) feeds img * (1 - hole) and the hole mask
as a 4th channel: `fill=0, hole_channel=True`. Strokes and boxes are drawn in pixels of the image they were
sampled for.
"""

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from degradations import checks
from degradations.quantize import quantize_8bit


@dataclass(frozen=True, kw_only=True, slots=True)
class MaskConfig:
    """Sizes are fractions of the image's shorter side; `fill` is the value of a hole pixel in [0, 1].

    A stroke is a polyline of `num_vertices` segments, each turning by up to `max_turn` radians, drawn with
    round joints. At least one stroke or box is drawn, so every LQ has a hole.
    """

    num_strokes_range: tuple[int, int] = (1, 4)
    num_vertices_range: tuple[int, int] = (3, 8)
    segment_length_range: tuple[float, float] = (0.05, 0.2)
    stroke_width_range: tuple[float, float] = (0.03, 0.1)
    max_turn: float = math.pi / 2
    num_boxes_range: tuple[int, int] = (0, 2)
    box_size_range: tuple[float, float] = (0.1, 0.35)
    fill: float = 1.0
    # True: the lq gets a 4th channel, 1 in the holes and 0 elsewhere, for nets that are told where the holes are.
    hole_channel: bool = False

    def __post_init__(self) -> None:
        for name in ("num_strokes_range", "num_vertices_range", "num_boxes_range"):
            checks.check_range(name, getattr(self, name), low=0, high=64)
            if any(int(v) != v for v in getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)!r}: must be integers")
        if self.num_vertices_range[0] < 1:
            raise ValueError(f"num_vertices_range={self.num_vertices_range!r}: a stroke needs >= 1 segment")
        if self.num_strokes_range[1] + self.num_boxes_range[1] < 1:
            raise ValueError("num_strokes_range and num_boxes_range allow no hole: raise one of their maxima")
        checks.check_range("segment_length_range", self.segment_length_range, low=0.0, high=1.0)
        checks.check_range("stroke_width_range", self.stroke_width_range, low=0.0, high=1.0)
        checks.check_range("box_size_range", self.box_size_range, low=0.0, high=1.0)
        if not 0.0 <= self.max_turn <= math.pi:
            raise ValueError(f"max_turn={self.max_turn!r}: must be in [0, pi]")
        if not 0.0 <= self.fill <= 1.0:
            raise ValueError(f"fill={self.fill!r}: must be in [0, 1]")

    @property
    def scale(self) -> int:
        return 1


@dataclass(frozen=True, kw_only=True, slots=True)
class MaskParams:
    kind: Literal["mask"] = "mask"
    height: int  # the image the holes were drawn for
    width: int
    strokes: tuple[tuple[int, tuple[tuple[int, int], ...]], ...]  # (width px, ((x, y) vertices)) per stroke
    boxes: tuple[tuple[int, int, int, int], ...]  # (x0, y0, x1, y1) per box, inclusive corners
    fill: float
    hole_channel: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> "MaskParams":
        strokes = tuple((int(w), tuple((int(x), int(y)) for x, y in points)) for w, points in d["strokes"])
        boxes = tuple(tuple(int(v) for v in box) for box in d["boxes"])
        return cls(height=d["height"], width=d["width"], strokes=strokes, boxes=boxes, fill=d["fill"],
                   hole_channel=bool(d.get("hole_channel", False)))


def sample_params(config: MaskConfig, rng: np.random.Generator, hq_shape: tuple[int, ...]) -> MaskParams:
    """Strokes and boxes for an image of hq_shape (H, W, ...)."""
    height, width = hq_shape[:2]
    side = min(height, width)
    num_strokes = int(rng.integers(config.num_strokes_range[0], config.num_strokes_range[1] + 1))
    num_boxes = int(rng.integers(config.num_boxes_range[0], config.num_boxes_range[1] + 1))
    if num_strokes + num_boxes == 0:  # every sample gets a hole
        num_strokes, num_boxes = (1, 0) if config.num_strokes_range[1] > 0 else (0, 1)
    strokes = []
    for _ in range(num_strokes):
        stroke_width = max(1, round(rng.uniform(*config.stroke_width_range) * side))
        x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
        angle = rng.uniform(0, 2 * math.pi)
        points = [(round(x), round(y))]
        for _ in range(int(rng.integers(config.num_vertices_range[0], config.num_vertices_range[1] + 1))):
            angle += rng.uniform(-config.max_turn, config.max_turn)
            length = rng.uniform(*config.segment_length_range) * side
            x = float(np.clip(x + length * math.cos(angle), 0, width - 1))
            y = float(np.clip(y + length * math.sin(angle), 0, height - 1))
            points.append((round(x), round(y)))
        strokes.append((stroke_width, tuple(points)))
    boxes = []
    for _ in range(num_boxes):
        box_w = max(1, round(rng.uniform(*config.box_size_range) * side))
        box_h = max(1, round(rng.uniform(*config.box_size_range) * side))
        x0, y0 = int(rng.integers(0, width - box_w + 1)), int(rng.integers(0, height - box_h + 1))
        boxes.append((x0, y0, x0 + box_w - 1, y0 + box_h - 1))
    return MaskParams(height=height, width=width, strokes=tuple(strokes), boxes=tuple(boxes), fill=config.fill,
                      hole_channel=config.hole_channel)


def keep_mask(params: MaskParams) -> np.ndarray:
    """HxW float32: 1 where the image is kept, 0 in the holes."""
    holes = np.zeros((params.height, params.width), np.uint8)
    for stroke_width, points in params.strokes:
        polyline = np.array(points, np.int32).reshape(-1, 1, 2)
        cv2.polylines(holes, [polyline], isClosed=False, color=1, thickness=stroke_width, lineType=cv2.LINE_8)
        for x, y in points:  # round joints and ends
            cv2.circle(holes, (x, y), stroke_width // 2, color=1, thickness=-1, lineType=cv2.LINE_8)
    for x0, y0, x1, y1 in params.boxes:
        holes[y0 : y1 + 1, x0 : x1 + 1] = 1
    return (1 - holes).astype(np.float32)


def apply(hq: np.ndarray, params: MaskParams) -> np.ndarray:
    """HxWx3 float32 [0, 1] -> same with the holes set to params.fill, on the 8-bit grid; with hole_channel,
    HxWx4: the hole mask (1 in the holes) appended."""
    if hq.shape[:2] != (params.height, params.width):
        raise ValueError(f"mask drawn for {params.height}x{params.width}, image is {hq.shape[0]}x{hq.shape[1]}")
    keep = keep_mask(params)[:, :, None]
    lq = quantize_8bit(keep * hq + (1.0 - keep) * np.float32(params.fill))
    return np.concatenate([lq, 1.0 - keep], axis=2) if params.hole_channel else lq
