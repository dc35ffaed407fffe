"""Longitudinal networks: one shared 1-channel encoder applied to every (timepoint, modality) image
of a lesion, a fusion head over the images that exist, and optionally clinical covariates.

Every network here maps ``(image [B, C, D, H, W], present [B, C] bool, covariates [B, K])`` to one
pCR logit per lesion [B]; channels are timepoint-major ((t0, m0), (t0, m1), (t1, m0), …), as
:class:`dlm_ml.data.patches.PatchConfig` orders them.

Missing images never pose as tissue: an image flagged absent is not encoded at all (its feature
vector is zero and every fusion head masks it), so its voxels cannot change a prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dlm_ml.models.encoders import ImageEncoder

FUSIONS: tuple[str, ...] = ("concat_delta", "attention", "masked_pool")
COVARIATE_FUSIONS: tuple[str, ...] = ("concat", "film")


def _mlp_head(in_features: int, hidden: int, dropout: float) -> nn.Sequential:
    """Two layers; ``hidden=0``: one linear layer (a logistic regression on the inputs)."""
    if hidden <= 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, 1))
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


def _all_present(image: torch.Tensor) -> torch.Tensor:
    return torch.ones(image.shape[:2], dtype=torch.bool, device=image.device)


def _no_covariates(image: torch.Tensor) -> torch.Tensor:
    return image.new_zeros((image.shape[0], 0))


def drop_images(present: torch.Tensor, prob: float) -> torch.Tensor:
    """Flag each present image absent with probability ``prob`` (torch's global RNG, seeded per
    epoch), but never the last present image of a lesion. [B, C] bool → [B, C] bool."""
    if prob <= 0:
        return present
    dropped = present & (torch.rand(present.shape, device=present.device) < prob)
    kept = present & ~dropped
    # A lesion left without any image keeps the ones it had.
    emptied = ~kept.any(dim=1, keepdim=True) & present.any(dim=1, keepdim=True)
    return torch.where(emptied, present, kept)


class SharedEncoderNet(nn.Module):
    """Shared encoder + fusion head (+ covariates).

    Parameters
    ----------
    encoder : 1-channel image encoder, [N, 1, D, H, W] → [N, F] (:mod:`dlm_ml.models.encoders`).
    timepoints, modalities : the channel layout (``data.patches``); C = T × M.
    fusion : how the images' features become one lesion vector:

        - ``"concat_delta"``: per modality, every timepoint's features and their change from the
          first timepoint (presurgery − baseline), concatenated; an absent image contributes zeros
          and so does any change involving it; the present flags are appended. Width
          M·(2T − 1)·F + T·M.
        - ``"attention"``: a learned query attends over the present images' tokens and over a
          learned "no image" token that is always there (so a lesion with no image is defined).
          Width F.
        - ``"masked_pool"``: mean and variance of the present images' tokens (HeMIS, Havaei et
          al. 2016), then the present flags. Width 2F + T·M.

        A token is the image's features through a linear map of its own (timepoint, modality)
        position, plus a learned position embedding: the stand-in for HeMIS's per-modality
        encoder layers. Without it a shared encoder's features would pool to the same vector
        whichever timepoint they came from, and a change over time could not be represented.
    n_covariates : K, width of the encoded covariate vector (set per fold by the training loop
        from the fitted covariate encoder; 0: none).
    covariate_fusion : ``"concat"`` (late concatenation before the head) or ``"film"`` (the
        covariates scale and shift the fused image features, Perez et al. 2018).
    hidden, dropout : the head, a 2-layer MLP.
    image_dropout : during training only, each present image is treated as absent with this
        probability (never all of a lesion's), so the model learns to predict without it.
    """

    #: absent images are never encoded and the present flags reach the head (models.build.handles_missing_images)
    handles_missing_images = True

    def __init__(self, encoder: ImageEncoder, timepoints: Sequence[str], modalities: Sequence[str],
                 fusion: str = "concat_delta", n_covariates: int = 0, covariate_fusion: str = "concat",
                 hidden: int = 64, dropout: float = 0.2, image_dropout: float = 0.0, attention_heads: int = 1):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if covariate_fusion not in COVARIATE_FUSIONS:
            raise ValueError(f"covariate_fusion must be one of {COVARIATE_FUSIONS}, got {covariate_fusion!r}")
        if not 0 <= image_dropout < 1:
            raise ValueError(f"image_dropout must lie in [0, 1), got {image_dropout}")
        self.encoder = encoder
        self.n_timepoints, self.n_modalities = len(timepoints), len(modalities)
        self.fusion, self.covariate_fusion = fusion, covariate_fusion
        self.n_covariates, self.image_dropout = int(n_covariates), float(image_dropout)
        f, t, m = encoder.feature_dim, self.n_timepoints, self.n_modalities
        if fusion != "concat_delta":
            # (concat_delta knows each image's position from where it is concatenated.)
            self.timepoint_embedding = nn.Parameter(torch.zeros(t, f))
            self.modality_embedding = nn.Parameter(torch.zeros(m, f))
            nn.init.normal_(self.timepoint_embedding, std=0.02)
            nn.init.normal_(self.modality_embedding, std=0.02)
            # One linear map per (timepoint, modality) position, [T·M, F, F], each initialised as
            # nn.Linear initialises its weight.
            weights = torch.stack([nn.Linear(f, f, bias=False).weight.detach() for _ in range(t * m)])
            self.position_projection = nn.Parameter(weights)
        if fusion == "concat_delta":
            width = m * (2 * t - 1) * f + t * m
        elif fusion == "attention":
            self.query = nn.Parameter(torch.randn(1, 1, f) * 0.02)
            self.null_token = nn.Parameter(torch.zeros(1, 1, f))
            self.attention = nn.MultiheadAttention(f, attention_heads, batch_first=True)
            width = f
        else:
            width = 2 * f + t * m
        if self.n_covariates and covariate_fusion == "film":
            self.film = nn.Linear(self.n_covariates, 2 * width)
            nn.init.zeros_(self.film.weight)  # starts as the identity: image features unchanged
            nn.init.zeros_(self.film.bias)
        head_in = width + (self.n_covariates if covariate_fusion == "concat" else 0)
        self.head = _mlp_head(head_in, hidden, dropout)

    def image_features(self, image: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Encoder features of the present images, zeros for absent ones: [B, T, M, F]."""
        b, c = image.shape[:2]
        flat = image.reshape(b * c, 1, *image.shape[2:])
        index = present.reshape(-1).nonzero(as_tuple=True)[0]
        features = image.new_zeros((b * c, self.encoder.feature_dim))
        if index.numel():
            features = features.index_copy(0, index, self.encoder(flat.index_select(0, index)).to(features.dtype))
        return features.reshape(b, self.n_timepoints, self.n_modalities, -1)

    def _tokens(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, T, M, F] features → [B, T·M, F] tokens (position-specific map + embedding), zero
        where the image is absent."""
        b, f = features.shape[0], features.shape[-1]
        projected = torch.einsum("bkf,kgf->bkg", features.reshape(b, -1, f), self.position_projection)
        embedding = (self.timepoint_embedding[:, None, :] + self.modality_embedding[None, :, :]).reshape(-1, f)
        return (projected + embedding) * mask.reshape(b, -1, 1)

    def fuse(self, features: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """[B, T, M, F] features and [B, C] flags → [B, width]."""
        b = features.shape[0]
        mask = present.reshape(b, self.n_timepoints, self.n_modalities).to(features.dtype)
        flags = mask.reshape(b, -1)
        if self.fusion == "concat_delta":
            features = features * mask[..., None]
            first, first_mask = features[:, :1], mask[:, :1]
            # A change is defined only where both images exist.
            deltas = (features[:, 1:] - first) * (mask[:, 1:] * first_mask)[..., None]
            per_modality = torch.cat([features, deltas], dim=1).transpose(1, 2)  # [B, M, 2T-1, F]
            return torch.cat([per_modality.reshape(b, -1), flags], dim=1)
        tokens = self._tokens(features, mask)
        if self.fusion == "attention":
            keys = torch.cat([self.null_token.expand(b, -1, -1), tokens], dim=1)
            ignore = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=present.device), ~present.bool()], dim=1)
            fused, _ = self.attention(self.query.expand(b, -1, -1), keys, keys, key_padding_mask=ignore,
                                      need_weights=False)
            return fused[:, 0]
        count = flags.sum(dim=1, keepdim=True).clamp(min=1.0)
        weights = flags[..., None]
        mean = (tokens * weights).sum(dim=1) / count
        variance = (((tokens - mean[:, None]) ** 2) * weights).sum(dim=1) / count
        return torch.cat([mean, variance, flags], dim=1)

    def forward(self, image: torch.Tensor, present: torch.Tensor | None = None,
                covariates: torch.Tensor | None = None) -> torch.Tensor:
        present = _all_present(image) if present is None else present.bool()
        expected = self.n_timepoints * self.n_modalities
        if image.shape[1] != expected or present.shape != image.shape[:2]:
            raise ValueError(f"expected {expected} channels (timepoints × modalities) and present flags "
                             f"[B, {expected}], got image {tuple(image.shape)} and present {tuple(present.shape)}")
        if self.training:
            present = drop_images(present, self.image_dropout)
        fused = self.fuse(self.image_features(image, present), present)
        if self.n_covariates:
            covariates = _checked_covariates(covariates, self.n_covariates, image.shape[0])
            if self.covariate_fusion == "film":
                gamma, beta = self.film(covariates).chunk(2, dim=1)
                fused = fused * (1 + gamma) + beta
            else:
                fused = torch.cat([fused, covariates.to(fused.dtype)], dim=1)
        return self.head(fused).reshape(image.shape[0])


def _checked_covariates(covariates: torch.Tensor | None, n_covariates: int, batch: int) -> torch.Tensor:
    if covariates is None or covariates.shape != (batch, n_covariates):
        got = None if covariates is None else tuple(covariates.shape)
        raise ValueError(f"the network reads {n_covariates} covariates per lesion, got {got}; choose a "
                         "data/covariates option (e.g. data/covariates=clinical)")
    return covariates.float()


class CovariateNet(nn.Module):
    """Clinical covariates only, no image: a linear layer (``hidden=0``, a logistic regression) or a
    2-layer MLP on the encoded covariates [B, K] → [B].
    The images of the batch are ignored; the baseline a network must beat to claim that imaging
    adds anything."""

    handles_missing_images = True  # it reads no image

    def __init__(self, n_covariates: int = 0, hidden: int = 0, dropout: float = 0.2):
        super().__init__()
        if n_covariates <= 0:
            raise ValueError("the covariates-only network needs covariates: choose a data/covariates option "
                             "(e.g. data/covariates=clinical)")
        self.n_covariates = int(n_covariates)
        self.head = _mlp_head(self.n_covariates, hidden, dropout)

    def forward(self, image: torch.Tensor, present: torch.Tensor | None = None,
                covariates: torch.Tensor | None = None) -> torch.Tensor:
        covariates = _checked_covariates(covariates, self.n_covariates, image.shape[0])
        return self.head(covariates).reshape(image.shape[0])
