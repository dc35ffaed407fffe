"""Training batches shared between the processes of a data-parallel fit.

A distributed sampler in the usual sense shards and pads the *dataset*: each process draws its
own batches from its own shard, so the samples averaged into one optimiser step are not those
a single process would have averaged, and padding repeats samples. :class:`RankSplitBatchSampler`
instead forms the global batches of the single-process order and gives each process a
contiguous part of every one: the union of the processes' batches of step ``s`` is exactly the
single-process batch ``s``, every sample once, nothing padded.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class RankSplitBatchSampler(torch.utils.data.Sampler):
    """This process's part of each global batch drawn from ``sampler``.

    Parameters
    ----------
    sampler : yields dataset indices in the single-process order (e.g. an epoch permutation);
        ``set_epoch`` is forwarded to it.
    batch_size : samples per *global* batch, i.e. per optimiser step summed over processes.
    rank, world_size : this process and the number of processes (1 = a single-process fit).
    drop_small_last : drop a last global batch of fewer than ``max(2, world_size)`` samples:
        batch normalisation cannot train on one sample, and every process needs at least one
        sample per step (all take the same number of steps). With one or two processes this is
        the single-process rule "drop a last batch of one".

    Each global batch of ``n`` samples is split into ``world_size`` contiguous parts whose sizes
    differ by at most one (``numpy.array_split``); process ``rank`` gets part ``rank``.
    """

    def __init__(self, sampler: torch.utils.data.Sampler, batch_size: int, rank: int = 0, world_size: int = 1,
                 drop_small_last: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if batch_size < world_size:
            raise ValueError(f"batch_size {batch_size} is smaller than the {world_size} processes sharing each "
                             "batch: every process needs at least one sample per step")
        self.sampler, self.batch_size = sampler, int(batch_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.drop_small_last = bool(drop_small_last)

    def set_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def global_batches(self) -> list[list[int]]:
        """The single-process batches of this epoch (the same in every process)."""
        order = list(self.sampler)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_small_last and batches and len(batches[-1]) < max(2, self.world_size) and len(order) > 1:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield [int(i) for i in np.array_split(np.asarray(batch), self.world_size)[self.rank]]

    def __len__(self) -> int:
        n = len(self.sampler)
        batches, last = divmod(n, self.batch_size)
        if last:
            batches += 1
            if self.drop_small_last and last < max(2, self.world_size) and n > 1:
                batches -= 1
        return batches
