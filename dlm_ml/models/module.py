"""LightningModule: class-weighted BCE on pCR, AUROC per epoch."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC


class PCRClassifier(pl.LightningModule):
    """Predict P(pCR) of a lesion from its patch.

    Parameters
    ----------
    net : module mapping ``image`` [B, C, D, H, W] to logits [B].
    lr, weight_decay : AdamW settings.
    pos_weight : weight of the positive class (pCR = 1) in BCE, usually n_neg / n_pos of the
        fit set; set by the training loop from the data, 1.0 means unweighted.
    """

    def __init__(self, net: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4, pos_weight: float = 1.0,
                 max_epochs: int | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)))
        self.val_auroc = BinaryAUROC()
        self.train_auroc = BinaryAUROC()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)

    def _loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), label.float(),
                                                              pos_weight=self.pos_weight)

    def training_step(self, batch, batch_idx):
        logits = self(batch["image"])
        loss = self._loss(logits, batch["label"])
        self.train_auroc.update(torch.sigmoid(logits.float()), batch["label"].long())
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(logits))
        return loss

    def on_train_epoch_end(self):
        self.log("train_auroc", self.train_auroc.compute())
        self.train_auroc.reset()

    def validation_step(self, batch, batch_idx):
        logits = self(batch["image"])
        loss = self._loss(logits, batch["label"])
        self.val_auroc.update(torch.sigmoid(logits.float()), batch["label"].long())
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(logits), prog_bar=True)

    def on_validation_epoch_end(self):
        self.log("val_auroc", self.val_auroc.compute(), prog_bar=True)
        self.val_auroc.reset()

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        prob = torch.sigmoid(self(batch["image"]).float())
        return {"index": batch["index"], "prob_pcr": prob}

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if not self.hparams.max_epochs:
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.hparams.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
