"""Batch norm over the global batch of a data-parallel fit (CPU, gloo), and the gathering of
validation outputs each lesion once."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dlm_ml.models.distributed import CrossRankBatchNorm, GlobalBatchNorm, gather_rows

BATCH, CHANNELS = 7, 3


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(2, CHANNELS, 3, padding=1), nn.BatchNorm3d(CHANNELS), nn.ReLU(),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(CHANNELS, 1))


def _batch() -> torch.Tensor:
    return torch.randn(BATCH, 2, 4, 4, 4, generator=torch.Generator().manual_seed(1))


def _rank_step(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """One training step of this process's part of the batch; saves its gradients and stats."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        net = CrossRankBatchNorm().apply(_net()).train()
        part = torch.tensor_split(_batch(), world_size)[rank]
        # the sum over the global batch: each process's part sums to it once the gradients are added
        net(part).sum().backward()
        grads = {name: p.grad for name, p in net.named_parameters()}
        for g in grads.values():
            dist.all_reduce(g)
        index = torch.arange(BATCH)  # every process "validated" every row: replicated, as without a sampler
        gathered = gather_rows(index, index.double() * 10)
        bn = net[1]
        torch.save({"grads": grads, "running_mean": bn.running_mean, "running_var": bn.running_var,
                    "gathered": gathered}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # starts 2 processes, each importing torch and Lightning
def test_two_processes_normalise_with_the_global_batch(tmp_path):
    mp.spawn(_rank_step, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    reference = _net().train()
    reference(_batch()).sum().backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, p in reference.named_parameters():
            torch.testing.assert_close(got["grads"][name], p.grad, rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(got["running_mean"], reference[1].running_mean)
        torch.testing.assert_close(got["running_var"], reference[1].running_var)
        index, value = got["gathered"]
        assert index.tolist() == list(range(BATCH)), "each row once"
        assert value.tolist() == [10.0 * i for i in range(BATCH)]


def test_plain_batch_norm_without_a_process_group_and_reverted():
    net = _net()
    x = _batch()
    expected = net(x)
    synced = CrossRankBatchNorm().apply(net)
    assert isinstance(synced[1], GlobalBatchNorm)
    torch.testing.assert_close(synced(x), expected)
    reverted = CrossRankBatchNorm().revert(synced)
    assert type(reverted[1]) is nn.BatchNorm3d
    assert not hasattr(reverted[1], "_dlm_ml_original_class")


def test_gather_rows_keeps_each_row_once_in_index_order():
    index, value = gather_rows(torch.tensor([3, 1, 3, 0]), torch.tensor([0.3, 0.1, 0.3, 0.0]))
    assert index.tolist() == [0, 1, 3]
    assert value.tolist() == pytest.approx([0.0, 0.1, 0.3])
