"""Convolutions written as im2col + one matrix product, for populations of models.

Under ``torch.func.vmap`` with per-member weights, ``nn.Conv2d`` becomes a grouped convolution (members as
groups) with layout conversions around it; the modules here become one batched GEMM per layer instead
(members as the batch of the GEMM, every member's images x output positions as its rows). They hold the
same parameters under the same names as the modules they replace, so ``functional_call`` with the stacked
population weights works unchanged. ``matmul_convs(model)`` returns a copy of a model with every ``Conv2d``
(and optionally every ``ConvTranspose2d``) replaced; ``overshoot.population.CONV_MODES`` says which forms
the populations use and why.
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
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        w = self.weight
        x = _compute_dtype(x).permute(0, 2, 3, 1)  # NHWC: a view when x is channels-last (as our outputs)
        if ph or pw:
            x = F.pad(x, (0, 0, pw, pw, ph, ph))
        b, c = x.shape[0], x.shape[3]
        patches = x.unfold(1, kh, sh).unfold(2, kw, sw)  # [B, Ho, Wo, C, kh, kw], a view
        ho, wo = patches.shape[1], patches.shape[2]
        # im2col with channels innermost (contiguous runs of C), the weight's columns in the same order
        cols = patches.permute(0, 1, 2, 4, 5, 3).reshape(b * ho * wo, kh * kw * c)
        w2 = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).t().to(cols.dtype)
        bias = self.bias
        out = cols @ w2 if bias is None else torch.addmm(bias.to(cols.dtype), cols, w2)  # [B*Ho*Wo, O]
        return out.view(b, ho, wo, -1).permute(0, 3, 1, 2)  # NCHW view of channels-last memory


class MatmulConvTranspose2d(nn.Module):
    """``nn.ConvTranspose2d`` (one group, no dilation) as one GEMM and a col2im written as shifted adds.

    The GEMM maps every input pixel to its k x k block of output contributions; output pixels of one
    stride phase (row mod s, column mod s) receive the taps of that phase shifted by whole input pixels, so
    col2im is a sum of padded slices per phase and one interleave of the phases (no scatter, and plain ops
    that vmap batches, unlike ``F.fold``). Input and output are channels-last in memory.
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

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        w = self.weight
        x = _compute_dtype(x).permute(0, 2, 3, 1)  # NHWC
        b, h, wd, c = x.shape
        ho = (h - 1) * sh - 2 * ph + kh + self.output_padding[0]
        wo = (wd - 1) * sw - 2 * pw + kw + self.output_padding[1]
        cols = (x.reshape(b * h * wd, c) @ w.reshape(c, -1).to(x.dtype)).view(b, h, wd, -1, kh, kw)
        # the padded output (offset p) in phase planes of size u x v: out_p[s*i + r] = plane_r[i]
        qh, qw = -(-kh // sh), -(-kw // sw)
        u = max(h - 1 + qh, -(-(ph + ho) // sh))
        v = max(wd - 1 + qw, -(-(pw + wo) // sw))
        planes = []
        for rh in range(sh):
            row = []
            for rw in range(sw):
                plane = None
                for a in range(rh, kh, sh):
                    for bb in range(rw, kw, sw):
                        i, j = a // sh, bb // sw  # the tap lands i, j input pixels further on
                        part = F.pad(cols[..., a, bb], (0, 0, j, v - wd - j, i, u - h - i))
                        plane = part if plane is None else plane + part
                row.append(plane if plane is not None else cols.new_zeros(b, u, v, cols.shape[3]))
            planes.append(torch.stack(row, dim=3))  # [B, u, v, s_w, C]
        full = torch.stack(planes, dim=2)  # [B, u, s_h, v, s_w, C]
        out = full.reshape(b, u * sh, v * sw, -1)[:, ph : ph + ho, pw : pw + wo]
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.permute(0, 3, 1, 2)


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
