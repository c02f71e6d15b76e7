"""Convolutions written as im2col + one matrix product, for populations of models.

Under ``torch.func.vmap`` with per-member weights, ``nn.Conv2d`` becomes a grouped convolution (members as
groups) with layout conversions around it; the modules here become one batched GEMM per layer instead
(members as the batch of the GEMM, every member's images x output positions as its rows). They hold the
same parameters under the same names as the modules they replace, so ``functional_call`` with the stacked
population weights works unchanged. ``matmul_convs(model)`` returns a copy of a model with every ``Conv2d``
(and optionally every ``ConvTranspose2d``) replaced; ``overshoot.train.population.CONV_MODES`` says which
forms the populations use and why.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MatmulConv2d", "MatmulConvTranspose2d", "matmul_convs"]


def _compute_dtype(x: Tensor) -> Tensor:
    """``x`` in autocast's dtype when autocast is on (the im2col copy is then made at the GEMM's width)."""
    dev = x.device.type
    if torch.is_autocast_enabled(dev) and x.is_floating_point():
        return x.to(torch.get_autocast_dtype(dev))
    return x


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _im2col_gemm(
    x: Tensor, w2: Tensor, bias: Tensor | None, kernel: tuple[int, int], stride: tuple[int, int]
) -> Tensor:
    """Correlate padded NHWC ``x`` with a kernel given as the GEMM matrix ``w2`` [kh*kw*C, O] (rows in
    (kh, kw, C) order): im2col with channels innermost, then one GEMM (bias inside); [B, Ho, Wo, O]."""
    (kh, kw), (sh, sw) = kernel, stride
    b, c = x.shape[0], x.shape[3]
    patches = x.unfold(1, kh, sh).unfold(2, kw, sw)  # [B, Ho, Wo, C, kh, kw], a view
    ho, wo = patches.shape[1], patches.shape[2]
    cols = patches.permute(0, 1, 2, 4, 5, 3).reshape(b * ho * wo, kh * kw * c)
    w2 = w2.to(cols.dtype)
    out = cols @ w2 if bias is None else torch.addmm(bias.to(cols.dtype), cols, w2)
    return out.view(b, ho, wo, -1)


class MatmulConv2d(nn.Module):
    """``nn.Conv2d`` (zero padding, no dilation, one group) as an NHWC im2col and a GEMM; its output is
    channels-last (an NCHW view of NHWC memory), which the next layer's im2col reads without a transpose."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.groups != 1 or _pair(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
            raise ValueError("MatmulConv2d takes convolutions with groups=1, dilation=1 and zero padding")
        if isinstance(conv.padding, str):
            raise ValueError("MatmulConv2d needs numeric padding")
        self.weight = conv.weight
        self.bias = conv.bias
        self.kernel, self.stride = _pair(conv.kernel_size), _pair(conv.stride)
        self.padding = _pair(conv.padding)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        (ph, pw), w = self.padding, self.weight
        x = _compute_dtype(x).permute(0, 2, 3, 1)  # NHWC: a view when x is channels-last (as our outputs)
        if ph or pw:
            x = F.pad(x, (0, 0, pw, pw, ph, ph))
        w2 = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).t()  # columns (kh, kw, C), as im2col's
        out = _im2col_gemm(x, w2, self.bias, self.kernel, self.stride)
        return out.permute(0, 3, 1, 2)  # NCHW view of channels-last memory


class MatmulConvTranspose2d(nn.Module):
    """``nn.ConvTranspose2d`` (one group, no dilation) as an NHWC im2col, one GEMM and a pixel shuffle.

    Output pixels of one stride phase (row mod s, column mod s) are a plain stride-1 correlation of the
    input with that phase's taps of the kernel (ceil(k/s) of them per axis), so the transposed convolution
    is one convolution of the input to C_out x s_h x s_w channels, its phases interleaved and the padding
    cropped off ("sub-pixel convolution"). It uses MatmulConv2d's im2col and costs the same arithmetic as
    the transposed convolution when s divides k. Input and output are channels-last in memory.
    """

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        super().__init__()
        if conv.groups != 1 or _pair(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
            raise ValueError("MatmulConvTranspose2d takes transposed convolutions with groups=1, dilation=1")
        self.weight = conv.weight  # [C_in, C_out, kh, kw]
        self.bias = conv.bias
        self.kernel, self.stride = _pair(conv.kernel_size), _pair(conv.stride)
        self.padding = _pair(conv.padding)  # type: ignore[arg-type]
        self.output_padding = _pair(conv.output_padding)
        (kh, kw), (sh, sw) = self.kernel, self.stride
        self.taps = (-(-kh // sh), -(-kw // sw))  # window of the phase convolution
        # Flat index into the kernel padded with one zero row and column: entry (rh, uh, rw, uw) is tap
        # ((J_h-1-uh)*s_h + rh, (J_w-1-uw)*s_w + rw), or the zero where that lies outside the kernel.
        jh, jw = self.taps
        th = [[min((jh - 1 - u) * sh + r, kh) for u in range(jh)] for r in range(sh)]
        tw = [[min((jw - 1 - u) * sw + r, kw) for u in range(jw)] for r in range(sw)]
        flat = [th[rh][uh] * (kw + 1) + tw[rw][uw] for rh in range(sh) for uh in range(jh)
                for rw in range(sw) for uw in range(jw)]  # fmt: skip
        self._flat_taps = torch.tensor(flat)
        self._taps_on: dict[torch.device, Tensor] = {}

    def _phase_weight(self) -> Tensor:
        """The phase convolution's weight as the GEMM's [J_h*J_w*C_in, s_h*s_w*C_out] matrix."""
        (jh, jw), (sh, sw) = self.taps, self.stride
        w = self.weight
        idx = self._taps_on.get(w.device)
        if idx is None:  # made once per device, before any CUDA graph capture (the eager warm-up steps)
            idx = self._taps_on.setdefault(w.device, self._flat_taps.to(w.device))
        cin, cout = w.shape[0], w.shape[1]
        taps = F.pad(w, (0, 1, 0, 1)).flatten(2).index_select(2, idx).view(cin, cout, sh, jh, sw, jw)
        return taps.permute(3, 5, 0, 2, 4, 1).reshape(jh * jw * cin, sh * sw * cout)

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (sh, sw), (ph, pw), (jh, jw) = self.kernel, self.stride, self.padding, self.taps
        x = _compute_dtype(x).permute(0, 2, 3, 1)  # NHWC
        b, h, wd, _ = x.shape
        ho = (h - 1) * sh - 2 * ph + kh + self.output_padding[0]
        wo = (wd - 1) * sw - 2 * pw + kw + self.output_padding[1]
        # Phase positions m hold the uncropped output rows m*s + r; only those from m0 = p // s up to the
        # last row kept are computed (the input is padded, or cut, to give exactly those windows).
        m0h, m0w = ph // sh, pw // sw
        mh, mw = -(-(ph + ho) // sh) - m0h, -(-(pw + wo) // sw) - m0w
        lh, lw = jh - 1 - m0h, jw - 1 - m0w
        x = F.pad(x, (0, 0, lw, mw + jw - 1 - lw - wd, lh, mh + jh - 1 - lh - h))
        bias = None if self.bias is None else self.bias.repeat(sh * sw)  # the same for every phase
        out = _im2col_gemm(x, self._phase_weight(), bias, self.taps, (1, 1))  # [B, mh, mw, s*s*C_out]
        cout = out.shape[3] // (sh * sw)
        full = out.view(b, mh, mw, sh, sw, cout).permute(0, 1, 3, 2, 4, 5).reshape(b, mh * sh, mw * sw, cout)
        top, left = ph - m0h * sh, pw - m0w * sw
        return full[:, top : top + ho, left : left + wo].permute(0, 3, 1, 2)


def matmul_convs(model: nn.Module, transposed: bool = True) -> nn.Module:
    """A deep copy of ``model`` with each ``Conv2d`` (and, when ``transposed``, each ``ConvTranspose2d``)
    replaced by its GEMM form (same parameter names, same function)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d:
                setattr(parent, name, MatmulConv2d(child))
            elif type(child) is nn.ConvTranspose2d and transposed:
                setattr(parent, name, MatmulConvTranspose2d(child))
    return model
