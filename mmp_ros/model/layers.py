"""Small convolutional building blocks shared by the encoders and the decoder.

Only ops that ONNX (opset 17) and TensorRT handle natively: Conv, BatchNorm (folded
at export), GELU/ReLU, bilinear Resize, AveragePool.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation; the bias is redundant before the norm."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1, act_layer: type[nn.Module] = nn.GELU) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                      padding=kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            act_layer(),
        )


class ResidualBlock(nn.Module):
    """Depthwise 3x3 for space, then a 2x pointwise MLP for channels, plus the identity.

    Depthwise-separable keeps the ``tiny`` model in the CPU real-time budget.
    """

    def __init__(self, dim: int, *, expansion: int = 2) -> None:
        super().__init__()
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False), nn.BatchNorm2d(dim)
        )
        self.channel = nn.Sequential(
            nn.Conv2d(dim, dim * expansion, 1), nn.GELU(), nn.Conv2d(dim * expansion, dim, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.channel(self.spatial(x))


class Stem(nn.Sequential):
    """Strided 3x3 convolutions from the sensor's channels down to one token per ``stride``."""

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        steps = stride.bit_length() - 1  # stride is a power of two
        layers: list[nn.Module] = []
        channels = in_channels
        for step in range(steps):
            out = width if step == steps - 1 else max(width // 2, 8)
            layers.append(ConvNormAct(channels, out, stride=2))
            channels = out
        super().__init__(*layers)


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``size``; the identity when already there (no Resize node).

    When a gradient is wanted on the CPU (training) both passes are two small matrix
    products (:class:`_BilinearResize`); otherwise (inference, export, the GPU) it is
    ``F.interpolate``, a Resize node in the exported graphs.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.device.type == 'cpu' and x.requires_grad and torch.is_grad_enabled() \
            and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
        return _BilinearResize.apply(x, tuple(size))
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


@functools.cache
def _interpolation_matrix(size_out: int, size_in: int, dtype: torch.dtype,
                          device: torch.device) -> torch.Tensor:
    """(size_out, size_in): linear interpolation along one axis, as ``F.interpolate`` does
    it (``align_corners=False``), taken from it by interpolating the identity's rows. Kept
    once built (a model resizes between a few sizes); read only."""
    rows = torch.eye(size_in, dtype=torch.float64)[:, None, :]  # (size_in, 1, size_in)
    columns = F.interpolate(rows, size=size_out, mode='linear', align_corners=False)
    return columns[:, 0, :].T.to(device=device, dtype=dtype).contiguous()


class _BilinearResize(torch.autograd.Function):
    """``F.interpolate(x, size, mode='bilinear', align_corners=False)`` as two matrix
    products (bilinear resizing is separable: ``y = A_h @ x @ A_w^T``), and its backward
    ``A_h^T @ grad @ A_w``; equal to ``F.interpolate`` and its gradient to float rounding.

    PyTorch's own CPU bilinear upsampling costs several times these products at training's
    sizes (2 threads): its backward 2.3 ms against 0.4 ms for a (16, 48, 8, 10) map brought
    to 32 x 40, 86 against 17 ms for batch 128's logits brought from 32 x 40 to 128 x 160;
    its forward 0.43-0.64 ms against 0.07-0.19 ms for the (16, C, h, w) maps a cached
    adaptation step brings to 32 x 32. Matrices are dense, so only CPU training, at its
    small sizes, takes this path (docs/performance.md). The GPU keeps PyTorch's own.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        ctx.in_size = tuple(x.shape[-2:])
        ctx.out_size = size
        rows = _interpolation_matrix(size[0], x.shape[-2], x.dtype, x.device)
        columns = _interpolation_matrix(size[1], x.shape[-1], x.dtype, x.device)
        if _channels_last(x):
            return _resize_channels_last(x, rows, columns)
        return rows @ (x @ columns.T)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (h_in, w_in), (h_out, w_out) = ctx.in_size, ctx.out_size
        rows = _interpolation_matrix(h_out, h_in, grad.dtype, grad.device)
        columns = _interpolation_matrix(w_out, w_in, grad.dtype, grad.device)
        if _channels_last(grad):
            return _resize_channels_last(grad, rows.T, columns.T), None
        return rows.T @ grad @ columns, None


def _channels_last(x: torch.Tensor) -> bool:
    """Laid out channels-last, and not also contiguous (as a map of one channel is)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _resize_channels_last(x: torch.Tensor, rows: torch.Tensor,
                          columns: torch.Tensor) -> torch.Tensor:
    """``rows @ x @ columns.T`` on a channels-last ``x`` (B, C, h, w), in its own layout:
    its memory is (B, h, w, C), so both products take it as it lies, and the result is
    channels-last too. The products on the contiguous layout would copy ``x`` into it, and
    the channels-last maps a convolution makes meet the result in sums (the decoder's),
    which mixed layouts make several times slower."""
    b, c, h, w = x.shape
    height, width = rows.shape[0], columns.shape[0]
    nhwc = x.permute(0, 2, 3, 1)  # a view: (B, h, w, C), contiguous
    y = rows @ nhwc.reshape(b, h, w * c)  # (B, H, w*C)
    y = columns @ y.view(b * height, w, c)  # (B*H, W, C)
    return y.view(b, height, width, c).permute(0, 3, 1, 2)


def frozen_norm_scale(norm: nn.BatchNorm2d) -> torch.Tensor:
    """The per-channel factor a batch norm in eval mode multiplies its input by (its shift
    is ``norm.bias - norm.running_mean * scale``)."""
    return norm.weight / torch.sqrt(norm.running_var + norm.eps)


def pool_to_grid(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Average ``x`` (B, C, h, w) onto a ``grid`` of cells.

    An exact AveragePool when the grid divides the map (the usual case, fixed input
    size); adaptive pooling only otherwise.
    """
    h, w = x.shape[-2:]
    gh, gw = grid
    if (h, w) == (gh, gw):
        return x
    if h % gh == 0 and w % gw == 0:
        kernel = (h // gh, w // gw)
        return F.avg_pool2d(x, kernel_size=kernel, stride=kernel)
    return F.adaptive_avg_pool2d(x, grid)
