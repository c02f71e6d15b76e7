"""Convolutions written as im2col + one matrix product, for populations of models.

Under ``torch.func.vmap`` with per-member weights, ``nn.Conv2d`` becomes a grouped convolution (members as
groups) with layout conversions around it; the modules here become one batched GEMM per layer instead
(members as the batch of the GEMM, every member's images x output positions as its rows). They hold the
same parameters under the same names as the modules they replace, so ``functional_call`` with the stacked
population weights works unchanged. ``matmul_convs(model)`` returns a copy of a model with every
``Conv2d`` / ``ConvTranspose2d`` replaced.
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
    """``nn.ConvTranspose2d`` (one group, no dilation) as a GEMM and a col2im (``F.fold``)."""

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
        x = _compute_dtype(x)
        b, c, h, wd = x.shape
        ho = (h - 1) * sh - 2 * ph + kh + self.output_padding[0]
        wo = (wd - 1) * sw - 2 * pw + kw + self.output_padding[1]
        rows = x.reshape(b, c, h * wd).transpose(1, 2).reshape(b * h * wd, c)
        cols = rows @ w.reshape(c, -1).to(rows.dtype)  # [B*H*W, C_out*kh*kw]
        cols = cols.view(b, h * wd, -1).transpose(1, 2)
        out = F.fold(cols, (ho, wo), (kh, kw), padding=(ph, pw), stride=(sh, sw))
        if self.bias is not None:
            out = out + self.bias.to(out.dtype).view(1, -1, 1, 1)
        return out


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
