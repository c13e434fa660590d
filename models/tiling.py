"""Overlapping-tile inference with smooth blending, for any `fn(lq_tile) -> out_tile` with a scale factor.

Tiles are cut in lq pixels, restored one at a time and blended with separable raised-cosine ramps over
the overlaps, so seams fade out. A memory budget picks the tile size from a measured bytes-per-pixel figure.
Legend: B batch, C channels, H, W lq sizes; outputs are scale * H x scale * W.
"""

import math
import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from models.progress import track

TileFn = Callable[[torch.Tensor], torch.Tensor]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile` overlapping by >= overlap; the last ends at length."""
    if tile >= length:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile={tile}), got {overlap}")
    stride = tile - overlap
    num = math.ceil((length - tile) / stride) + 1
    # Spread the tiles evenly so every overlap is at least `overlap` and the last tile ends at the border.
    return [round(i * (length - tile) / (num - 1)) for i in range(num)]


def _ramp(length: int, start: int, tile: int, ramp: int, total: int) -> torch.Tensor:
    """1-D blending weight of one tile: raised-cosine ramps of width `ramp` on interior edges, 1 elsewhere."""
    w = torch.ones(tile, dtype=torch.float64)
    if ramp > 0:
        rise = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp)
        if start > 0:
            w[:ramp] = rise
        if start + tile < total:
            w[-ramp:] = torch.minimum(w[-ramp:], rise.flip(0))
    return w[:length]


@torch.no_grad()
def tiled(
    fn: TileFn, lq_BCHW: torch.Tensor, *, scale: int = 1, tile: int, overlap: int = 32, progress: bool = False,
) -> torch.Tensor:
    """fn applied over overlapping lq tiles of size `tile` and blended; one call of fn when the image fits.

    fn maps (B, C, h, w) to (B, C_out, scale*h, scale*w). Output is float32 on lq's device.
    """
    B, _, H, W = lq_BCHW.shape
    if tile >= H and tile >= W:
        return fn(lq_BCHW)
    tile_h, tile_w = min(tile, H), min(tile, W)
    ys, xs = tile_starts(H, tile_h, overlap), tile_starts(W, tile_w, overlap)
    ramp = overlap * scale
    out = weight = None
    boxes = [(y, x) for y in ys for x in xs]
    for y, x in track(boxes, desc="tiles", enabled=progress):
        tile_out = fn(lq_BCHW[..., y:y + tile_h, x:x + tile_w]).float()
        if out is None:
            out = lq_BCHW.new_zeros((B, tile_out.shape[1], H * scale, W * scale), dtype=torch.float32)
            weight = lq_BCHW.new_zeros((1, 1, H * scale, W * scale), dtype=torch.float32)
        wy = _ramp(tile_h * scale, y * scale, tile_h * scale, ramp, H * scale)
        wx = _ramp(tile_w * scale, x * scale, tile_w * scale, ramp, W * scale)
        w_11hw = (wy[:, None] * wx[None, :]).to(out.device, torch.float32)[None, None]
        region = (..., slice(y * scale, (y + tile_h) * scale), slice(x * scale, (x + tile_w) * scale))
        out[region] += tile_out * w_11hw
        weight[region] += w_11hw
    return out / weight


def choose_tile(height: int, width: int, *, max_bytes: float, bytes_per_pixel: float, multiple: int = 16,
                min_tile: int = 64) -> int | None:
    """Largest square lq tile (a multiple of `multiple`) whose estimated peak fits max_bytes; None = one pass."""
    if height * width * bytes_per_pixel <= max_bytes:
        return None
    side = int(math.sqrt(max_bytes / bytes_per_pixel)) // multiple * multiple
    if side < min_tile:
        raise ValueError(f"a {max_bytes / 2**30:.2f} GiB budget allows only {side}px tiles "
                         f"({bytes_per_pixel:.0f} B/px); raise the budget")
    return side


class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of tensor storage created inside the context (CPU or GPU), tracked per operator.

    Kernel workspaces are invisible to it, so callers add a margin. Storage is counted once per data
    pointer and released when the tensor that created it dies.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and not t.is_meta:
                key = t.untyped_storage().data_ptr()
                if key != 0 and key not in self.live:
                    self.live[key] = t.untyped_storage().nbytes()
                    self.current += self.live[key]
                    weakref.finalize(t, self._release, key)
        self.peak = max(self.peak, self.current)
        return out


@torch.no_grad()
def measure_bytes_per_pixel(fn: TileFn, probe_BCHW: torch.Tensor, *, margin: float = 1.5) -> float:
    """Peak transient bytes of fn per lq pixel, measured on a probe tile, times a safety margin."""
    with PeakTensorMemory() as tracker:
        fn(probe_BCHW)
    return margin * tracker.peak / (probe_BCHW.shape[-2] * probe_BCHW.shape[-1])


def pad_to_multiple(x_BCHW: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right by reflection until H and W are multiples of `multiple`; crop back after the net.

    F.pad's reflection needs the pad to be smaller than the side, so an image smaller than the padding (a
    10x10 input to a net with stride 16) is reflected several times over; a side of 1 is replicated.
    """
    while True:
        H, W = x_BCHW.shape[-2:]
        pad_h, pad_w = -H % multiple, -W % multiple
        if not pad_h and not pad_w:
            return x_BCHW
        if min(H, W) == 1:
            return torch.nn.functional.pad(x_BCHW, (0, pad_w, 0, pad_h), mode="replicate")
        x_BCHW = torch.nn.functional.pad(x_BCHW, (0, min(pad_w, W - 1), 0, min(pad_h, H - 1)), mode="reflect")
