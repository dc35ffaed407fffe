"""What a data-parallel fit needs beyond Lightning's DDP to train as one process would.

- :class:`CrossRankBatchNorm`: batch normalisation over the global batch on any backend.
  ``torch.nn.SyncBatchNorm`` refuses CPU tensors, so a CPU (gloo) fit would otherwise normalise
  each process's part of the batch with its own statistics.
- :func:`gather_rows`: every process's per-lesion validation outputs, each lesion once.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from pytorch_lightning.plugins.layer_sync import LayerSync
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def distributed_world_size() -> int:
    """Processes in the default process group; 1 when there is none."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlobalBatchNorm(_BatchNorm):
    """Batch normalisation whose training statistics are those of the global batch: the sums
    and sums of squares of every process's part are added (an all-reduce through which the
    gradient flows back to every process's samples). Input [B, C, *spatial]; statistics per C.
    In evaluation, or without a process group, it is the plain batch norm it replaced."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of at least 2 dimensions [B, C, ...], got {input.dim()}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or distributed_world_size() == 1:
            return super().forward(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        # float64 sums: the variance as E[x²] - E[x]² loses digits in float32.
        x = input.double()
        local = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_tensor([input.numel() / max(channels, 1)])])
        total = dist_nn.all_reduce(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels:2 * channels] / count - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        out = out.to(input.dtype)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


class CrossRankBatchNorm(LayerSync):
    """Lightning plugin (``Trainer(plugins=[...], sync_batchnorm=True)``) that turns every batch
    norm of the model into a :class:`GlobalBatchNorm` for the fit, and back afterwards; works
    with gloo on CPU, where ``torch.nn.SyncBatchNorm`` does not."""

    def apply(self, model: nn.Module) -> nn.Module:
        return _replace_batchnorms(model, GlobalBatchNorm, lambda m: isinstance(m, _BatchNorm)
                                   and not isinstance(m, GlobalBatchNorm))

    def revert(self, model: nn.Module) -> nn.Module:
        return _replace_batchnorms(model, None, lambda m: isinstance(m, GlobalBatchNorm))


_ORIGINAL_CLASS = "_dlm_ml_original_class"


def _replace_batchnorms(module: nn.Module, cls, selected) -> nn.Module:
    """``module`` with each selected batch norm re-classed to ``cls`` (``None``: its original
    class). Parameters and buffers are the same objects: only the forward changes."""
    for child in module.modules():
        if selected(child):
            if cls is None:
                child.__class__ = getattr(child, _ORIGINAL_CLASS)
                delattr(child, _ORIGINAL_CLASS)
            else:
                setattr(child, _ORIGINAL_CLASS, type(child))
                child.__class__ = cls
    return module


def gather_rows(index: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-row outputs of every process, each row (dataset index) once, sorted by index.

    ``index`` [N] int and each of ``values`` [N] are this process's; the result is
    ``(index [M], *values [M])`` over all processes. A row several processes computed (a padded
    or replicated evaluation set) is kept once: its copies come from the same weights. Without a
    process group it de-duplicates this process's rows only. Returned on ``index``'s device.
    """
    device = index.device
    local = [t.detach().cpu() for t in (index, *values)]
    if distributed_world_size() > 1:
        everyone: list = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, local)
        parts = [torch.cat([p[k] for p in everyone]) for k in range(len(local))]
    else:
        parts = local
    _, first = np.unique(parts[0].numpy(), return_index=True)
    keep = torch.as_tensor(first, dtype=torch.long)
    return tuple(p[keep].to(device) for p in parts)
