"""LightningModule: a network's pCR logits trained with a configurable loss, AUROC per epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC

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
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None, pos_weight: float = 1.0,
                 loss: str = "weighted_bce", focal_gamma: float = 2.0):
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
        self.val_auroc = BinaryAUROC()
        self.train_auroc = BinaryAUROC()

    def forward(self, image: torch.Tensor, present: torch.Tensor | None = None,
                covariates: torch.Tensor | None = None) -> torch.Tensor:
        """image [B, C, D, H, W], present [B, C] bool, covariates [B, K] → logits [B]."""
        return self.net(image, present, covariates)

    def _logits(self, batch: dict) -> torch.Tensor:
        return self(batch["image"], batch.get("present"), batch.get("covariates"))

    def _loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        logits, label = logits.float(), label.float()
        if self.loss_name == "focal":
            bce = nn.functional.binary_cross_entropy_with_logits(logits, label, reduction="none")
            p_true = torch.exp(-bce)  # the probability given to the true class
            return ((1 - p_true) ** self.focal_gamma * bce).mean()
        return nn.functional.binary_cross_entropy_with_logits(logits, label, pos_weight=self.pos_weight)

    def training_step(self, batch, batch_idx):
        logits = self._logits(batch)
        loss = self._loss(logits, batch["label"])
        self.train_auroc.update(torch.sigmoid(logits.float()), batch["label"].long())
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(logits))
        return loss

    def on_train_epoch_end(self):
        self.log("train_auroc", self.train_auroc.compute())
        self.train_auroc.reset()

    def validation_step(self, batch, batch_idx):
        logits = self._logits(batch)
        loss = self._loss(logits, batch["label"])
        self.val_auroc.update(torch.sigmoid(logits.float()), batch["label"].long())
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(logits), prog_bar=True)

    def on_validation_epoch_end(self):
        self.log("val_auroc", self.val_auroc.compute(), prog_bar=True)
        self.val_auroc.reset()

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        prob = torch.sigmoid(self._logits(batch).float())
        return {"index": batch["index"], "prob_pcr": prob}

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
