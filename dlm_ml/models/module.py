"""LightningModule: a network's pCR logits trained with a configurable loss, AUROC per epoch.

The same module trains in one process or data-parallel (DDP): with several processes each
step's loss is scaled so that the averaged gradient is that of the global batch's mean loss,
and the validation metrics that choose the best epoch are computed on every validation lesion
exactly once, gathered from all processes (:func:`dlm_ml.models.distributed.gather_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC
from torchmetrics.functional.classification import binary_auroc

from dlm_ml.models.distributed import distributed_world_size, gather_rows

#: ``params -> optimizer``, e.g. ``functools.partial(torch.optim.AdamW, lr=1e-3)`` (a ``_partial_`` config).
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
#: ``optimizer -> LR scheduler``, e.g. ``functools.partial(CosineAnnealingLR, T_max=40)``; stepped once per epoch.
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


#: ``weighted_bce``: BCE with the positive class weighted n_neg / n_pos of the fit lesions (balanced
#: ranking, over-predicts pCR: recalibrate before reading probabilities); ``bce``: unweighted, its
#: probabilities estimate the fit set's prevalence; ``focal``: focal loss (Lin et al. 2017) with
#: ``focal_gamma``, unweighted, down-weights easy lesions.
LOSSES: tuple[str, ...] = ("weighted_bce", "bce", "focal")


def _default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)


class PCRClassifier(pl.LightningModule):
    """Predict P(pCR) of a lesion from its patch.

    Parameters
    ----------
    net : module mapping ``image`` [B, C, D, H, W] to logits [B].
    optimizer : factory called with the parameters (the model config's ``optimizer``, a
        ``_partial_`` target); default AdamW, lr 1e-3, weight decay 1e-4.
    scheduler : factory called with the optimizer (the model config's ``scheduler``), stepped
        at the end of every epoch; ``None``: constant learning rate.
    pos_weight : weight of the positive class (pCR = 1) in BCE, usually n_neg / n_pos of the
        fit set; set by the training loop from the data; used by ``loss="weighted_bce"`` only.
    loss : one of :data:`LOSSES`.
    focal_gamma : focusing exponent of the focal loss.
    channels_last : keep the network's weights and 5-D inputs in ``torch.channels_last_3d``
        memory layout (faster 3-D convolutions with cuDNN under mixed precision).
    compile_net : compile the network's forward with ``torch.compile`` (in place: the state
        dict keeps its keys) before the first fit or prediction.
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None, pos_weight: float = 1.0,
                 loss: str = "weighted_bce", focal_gamma: float = 2.0, channels_last: bool = False,
                 compile_net: bool = False):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        # Only plain numbers go into checkpoints: they are loaded with weights_only=True, which
        # refuses pickled callables such as the optimizer factory.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer or _default_optimizer
        self.scheduler_factory = scheduler
        self.loss_name, self.focal_gamma = loss, float(focal_gamma)
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight) if loss == "weighted_bce" else 1.0))
        self.train_auroc = BinaryAUROC()
        self.channels_last, self.compile_net = bool(channels_last), bool(compile_net)
        self._net_prepared = False
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def configure_model(self) -> None:
        """Memory layout and compilation, once, in the process that trains or predicts."""
        if self._net_prepared:
            return
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last_3d)
        if self.compile_net:
            self.net.compile()
        self._net_prepared = True


    def forward(self, image: torch.Tensor, present: torch.Tensor | None = None,
                covariates: torch.Tensor | None = None) -> torch.Tensor:
        """image [B, C, D, H, W], present [B, C] bool, covariates [B, K] → logits [B]."""
        return self.net(image, present, covariates)

    def _logits(self, batch: dict) -> torch.Tensor:
        image = batch["image"]
        if self.channels_last and image.dim() == 5:
            image = image.contiguous(memory_format=torch.channels_last_3d)
        return self(image, batch.get("present"), batch.get("covariates"))

    def _loss(self, logits: torch.Tensor, label: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The loss of logits [B] against labels [B]: their mean, or per lesion [B] (``"none"``)."""
        logits, label = logits.float(), label.float()
        if self.loss_name == "focal":
            bce = nn.functional.binary_cross_entropy_with_logits(logits, label, reduction="none")
            p_true = torch.exp(-bce)  # the probability given to the true class
            per_lesion = (1 - p_true) ** self.focal_gamma * bce
            return per_lesion.mean() if reduction == "mean" else per_lesion
        return nn.functional.binary_cross_entropy_with_logits(logits, label, pos_weight=self.pos_weight,
                                                              reduction=reduction)

    def training_step(self, batch, batch_idx):
        logits = self._logits(batch)
        world_size = distributed_world_size()
        if world_size == 1:
            loss = self._loss(logits, batch["label"])
            to_backpropagate = loss
        else:
            # DDP averages the processes' gradients. Each process holds part of the global batch
            # (data.samplers.RankSplitBatchSampler), parts may differ in size by one: summing
            # this part's losses over the global count, times the number of processes, makes
            # that average the gradient of the global batch's mean loss.
            per_lesion = self._loss(logits, batch["label"], reduction="none")
            n_global = self.trainer.strategy.reduce(torch.tensor(float(len(per_lesion)), device=self.device),
                                                    reduce_op="sum")
            to_backpropagate = per_lesion.sum() * world_size / n_global
            loss = per_lesion.detach().mean()
        self.train_auroc.update(torch.sigmoid(logits.float()), batch["label"].long())
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(logits),
                 sync_dist=world_size > 1)
        return to_backpropagate

    def on_train_epoch_end(self):
        self.log("train_auroc", self.train_auroc.compute())
        self.train_auroc.reset()

    def validation_step(self, batch, batch_idx):
        logits = self._logits(batch)
        per_lesion = self._loss(logits, batch["label"], reduction="none")
        self._val_outputs.append((batch["index"], torch.sigmoid(logits.float()), per_lesion, batch["label"]))

    def on_validation_epoch_start(self):
        self._val_outputs = []

    def on_validation_epoch_end(self):
        """``val_loss`` (mean loss per lesion) and ``val_auroc`` over the validation lesions, each
        once: gathered from every process and de-duplicated by row, so that neither a padded
        sampler's repeats nor the split between processes changes the epoch the checkpoint and
        early stopping choose."""
        if not self._val_outputs:
            return
        index, prob, loss, label = (torch.cat(parts) for parts in zip(*self._val_outputs, strict=True))
        self._val_outputs = []
        _, prob, loss, label = gather_rows(index, prob, loss, label)
        # Every process now holds the same values: "max" across processes returns them unchanged.
        synced = {"sync_dist": distributed_world_size() > 1, "reduce_fx": "max"}
        self.log("val_loss", loss.mean(), prog_bar=True, **synced)
        self.log("val_auroc", binary_auroc(prob, label.long()), prog_bar=True, **synced)

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        prob = torch.sigmoid(self._logits(batch).float())
        return {"index": batch["index"], "prob_pcr": prob}

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
