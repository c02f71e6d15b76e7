"""The paper's CIFAR training augmentation as batched tensor ops on the device.

Pipeline (torchvision's order in the paper): RandomCrop(32, padding=4), RandomHorizontalFlip(),
ColorJitter(0.4, 0.4, 0.4, 0.08), RandomRotation(5), RandomPerspective(0.2, p=0.2).
Every random parameter is drawn per sample in `draw_params` (from the epoch plan's generator) with the same
distributions as torchvision's `get_params`, and the perspective homographies are solved there, once per
epoch; `augment` then applies them with no per-sample Python, no linear solve and no
host synchronisation. Each op follows torchvision's tensor implementation (colour jitter in a random order
per sample, HSV hue shift, nearest-neighbour rotation, bilinear perspective, zero fill). The one difference
from the public harness is that it ran these ops on PIL uint8 images, rounding to 8 bits after each op,
while here the image stays in floating point from the flip on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4
JITTER = 0.4
HUE = 0.08
DEGREES = 5.0
DISTORTION = 0.2
PERSPECTIVE_P = 0.2
_GRAY = (0.2989, 0.587, 0.114)


def draw_params(gen: torch.Generator, n: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-sample augmentation parameters for `n` images of `size` x `size` pixels."""

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen, device=device, dtype=torch.float64)

    half = size // 2
    corner = int(DISTORTION * half) + 1
    params = {
        "aug_crop": torch.randint(0, 2 * PAD + 1, (n, 2), generator=gen, device=device),
        "aug_flip": torch.rand(n, generator=gen, device=device) < 0.5,
        "aug_jitter": torch.cat(
            [uniform(1 - JITTER, 1 + JITTER, 3), uniform(-HUE, HUE, 1)], dim=1
        ),  # brightness, contrast, saturation, hue
        "aug_order": torch.rand(n, 4, generator=gen, device=device).argsort(dim=1),
        "aug_angle": uniform(-DEGREES, DEGREES),
        "aug_persp": torch.rand(n, generator=gen, device=device) < PERSPECTIVE_P,
        "aug_corners": torch.randint(0, corner, (n, 8), generator=gen, device=device),
    }
    # Homographies are solved here, once per epoch, so that batches never run a linear solve.
    params["aug_homography"] = perspective_coeffs(*corner_points(params["aug_corners"], size))
    return params


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(x.dtype).view(-1, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of [B,3,H,W] images, shape [B,1,H,W]."""
    r, g, b = x.unbind(dim=1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    r = _bcast(ratio, x)
    return (r * x + (1.0 - r) * other).clamp(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-sample brightness factor."""
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-sample contrast factor (blend with the image's mean grey level)."""
    return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-sample saturation factor (blend with the greyscale image)."""
    return _blend(x, grayscale(x), factor)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] RGB in [0,1] to HSV (hue in [0,1)), as torchvision's tensor implementation."""
    r, g, b = x.unbind(dim=1)
    maxc = x.amax(dim=1)
    minc = x.amin(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_div = torch.where(eqc, ones, cr)
    rc = (maxc - r) / cr_div
    gc = (maxc - g) / cr_div
    bc = (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hsv`: f(n) = v - v*s*clamp(min(k, 4-k), 0, 1) with k = (n + 6h) mod 6."""
    h, s, v = x.unbind(dim=1)
    h6 = h * 6.0
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(h6 + n, 6.0)
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=1)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-sample hue shift in [-0.5, 0.5] turns of the colour wheel."""
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + factor.to(x.dtype).view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


def color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter with per-sample factors [B,4] applied in per-sample orders [B,4] (permutations of 0..3)."""
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    for pos in range(4):
        which = order[:, pos].view(-1, 1, 1, 1)
        out = x
        for j, op in enumerate(ops):
            out = torch.where(which == j, op(x, factors[:, j]), out)
        x = out
    return x


def random_crop(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pad by PAD and crop back to the input size at per-sample (row, col) offsets in [0, 2*PAD]."""
    b, _, h, w = x.shape
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _pixel_grid(
    h: int, w: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype),
        torch.arange(w, device=device, dtype=dtype),
        indexing="ij",
    )
    return xs, ys


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image counter-clockwise by its angle about the centre (nearest, zero fill)."""
    _, _, h, w = x.shape
    xs, ys = _pixel_grid(h, w, torch.float64, x.device)
    xc = (xs - w * 0.5 + 0.5).unsqueeze(0)
    yc = (ys - h * 0.5 + 0.5).unsqueeze(0)
    r = torch.deg2rad(-degrees.to(torch.float64)).view(-1, 1, 1)
    cos, sin = torch.cos(r), torch.sin(r)
    gx = (cos * xc + sin * yc) / (0.5 * w)
    gy = (-sin * xc + cos * yc) / (0.5 * h)
    grid = torch.stack((gx, gy), dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def perspective_coeffs(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Per-sample [B,8] homography mapping output points `end` [B,4,2] to input points `start` [B,4,2]."""
    b = end.shape[0]
    a = torch.zeros(b, 8, 8, dtype=torch.float64, device=end.device)
    ex, ey = end[..., 0].double(), end[..., 1].double()
    sx, sy = start[..., 0].double(), start[..., 1].double()
    a[:, 0::2, 0] = ex
    a[:, 0::2, 1] = ey
    a[:, 0::2, 2] = 1.0
    a[:, 0::2, 6] = -sx * ex
    a[:, 0::2, 7] = -sx * ey
    a[:, 1::2, 3] = ex
    a[:, 1::2, 4] = ey
    a[:, 1::2, 5] = 1.0
    a[:, 1::2, 6] = -sy * ex
    a[:, 1::2, 7] = -sy * ey
    rhs = torch.stack((sx, sy), dim=-1).reshape(b, 8, 1)
    sol, _ = torch.linalg.solve_ex(a, rhs, check_errors=False)  # no host sync
    return sol.squeeze(-1)


def corner_points(corners: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's RandomPerspective start/end points from per-sample corner draws [B,8] in [0, d]."""
    b = corners.shape[0]
    m = size - 1
    c = corners.to(torch.float64)
    start = torch.tensor([[0, 0], [m, 0], [m, m], [0, m]], dtype=torch.float64, device=corners.device)
    sign = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float64, device=corners.device)
    end = start + sign * c.view(b, 4, 2)
    return start.expand(b, 4, 2), end


def warp_perspective(x: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Apply per-sample homographies [B,8] (output pixel -> input pixel) with bilinear sampling, zero fill."""
    _, _, h, w = x.shape
    xs, ys = _pixel_grid(h, w, torch.float64, x.device)
    xb = (xs + 0.5).unsqueeze(0)
    yb = (ys + 0.5).unsqueeze(0)
    k = coeffs.view(-1, 8, 1, 1).unbind(dim=1)
    den = k[6] * xb + k[7] * yb + 1.0
    gx = (k[0] * xb + k[1] * yb + k[2]) / (0.5 * w) / den - 1.0
    gy = (k[3] * xb + k[4] * yb + k[5]) / (0.5 * h) / den - 1.0
    grid = torch.stack((gx, gy), dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment(x: torch.Tensor, params: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """Augmented float images in [0,1] of `dtype` from uint8 [B,3,H,W] images and their drawn parameters."""
    x = random_crop(x, params["aug_crop"])
    x = torch.where(params["aug_flip"].view(-1, 1, 1, 1), x.flip(-1), x)
    x = x.to(dtype) / 255.0
    x = color_jitter(x, params["aug_jitter"], params["aug_order"])
    x = rotate(x, params["aug_angle"])
    warped = warp_perspective(x, params["aug_homography"])
    x = torch.where(params["aug_persp"].view(-1, 1, 1, 1), warped, x)
    return x
