"""Saliency maps of a lesion's pCR prediction: Grad-CAM and occlusion sensitivity (MONAI
``monai.visualize``), one map per (timepoint, modality) image, averaged over a fold ensemble.

Every network maps ``(image [B, C, D, H, W], present [B, C] bool, covariates [B, K])`` to pCR
logits [B]. MONAI's CAM and occlusion classes call ``module(x)`` and read class scores [B, classes],
so each network is wrapped in a module that binds the lesion's ``present`` flags and covariates
(expanded to the batch of ``x``: occlusion runs batches of occluded copies) and returns [B, 1].

**Grad-CAM** (Selvaraju et al. 2017) weights the target layer's feature maps by the mean gradient
of the pCR *logit* and keeps the positive part: it shows the regions that raise P(pCR); evidence
for viable tumour is not shown (use the occlusion map, which is signed).

- Stacked-channel CNNs see all channels at once: the target layer holds one feature map for the
  lesion, so every present channel carries the same map and :attr:`LesionSaliency.lesion_level`
  names the method.
- Shared-encoder networks (:class:`~dlm_ml.models.longitudinal.SharedEncoderNet`) encode a flat
  batch of the present images; a hook inside the encoder sees one activation row per present
  image (in channel order), so MONAI's Grad-CAM, which weights each row by its own gradients,
  gives one map per present image. Which case a network is, is measured, not assumed: a probe
  forward pass with every channel present counts the target layer's rows (1 or C).

Target layer (``gradcam_layer=None``): the last module, in forward execution order, whose output
is a 3-D feature map ``[N, F, d, h, w]`` of more than one voxel; names are those of the network's
``named_modules()``. Not the last ``Conv3d`` in registration order: in MONAI's residual units and
ResNet blocks that is the shortcut convolution (``residual``, ``downsample``), one branch of the
block rather than its output. What the rule picks at 20³ voxels (40 mm at 2 mm): for ``small_cnn``
``net.net`` and for the conv encoder ``encoder.body.net`` (the stack of residual stages, 3³),
``densenet121`` (small stem) ``net.class_layers.relu`` (2³), ``resnet10`` ``net.layer4`` and the
ResNet encoder ``encoder.body.layer4`` (2³). Grad-CAM is therefore coarse at these patch sizes (one
feature voxel spans 14-20 mm, upsampled trilinearly); the occlusion map resolves finer detail.

Cost: occlusion runs one forward pass per window and present channel (216 windows of a 20³
patch with the defaults): a second or two per channel for ``small_cnn`` or the conv encoder on a
CPU, minutes for ``densenet121``, whose small stem keeps the full 20³ grid in its first block.

**Occlusion sensitivity** (Zeiler & Fergus 2014), per channel: MONAI's
:class:`~monai.visualize.OcclusionSensitivity` slides a cube of ``occlusion_mask_voxels`` over one
channel at a time (the other channels unchanged), replacing it with ``occlusion_fill`` (default 0,
the normalisation centre: liver-like tissue, what a missing image is filled with), and averages
the P(pCR) of the windows covering each voxel. The map is **the drop in P(pCR) when the region is
hidden**: P(pCR | image) - P(pCR | region hidden), in probability units; positive = the region
supports pCR, negative = it argues for viable tumour.

**Ensembles**: a Grad-CAM map has no unit (its scale depends on the network's activations and
weights), so each network's maps are divided by their maximum over the lesion (all channels
together, keeping the channels' relative weight) before the average; an all-zero map (no region
raises the logit) stays zero. Occlusion maps are in probability units and averaged as they are:
the average is then the drop in the ensemble's mean probability.

Absent channels get no map: NaN in the arrays (the writer writes no file for them).

The networks are never modified: each is deep-copied once (MONAI registers hooks it never
removes, and may switch ``inplace`` off on the target layer); copies run in eval mode on the
network's device, and the maps come back as numpy arrays. No random numbers are drawn; on CPU the
maps are deterministic.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.visualize import GradCAM, OcclusionSensitivity
from torch import nn

#: The saliency methods, in the order they are computed and shown.
METHODS: tuple[str, ...] = ("gradcam", "occlusion")


@dataclass(frozen=True)
class LesionSaliency:
    """Saliency maps of one lesion.

    Attributes
    ----------
    maps : method → float32 [C, D, H, W], NaN in absent channels. ``gradcam``: in [0, 1] (per
        network normalised to its maximum, then averaged). ``occlusion``: drop in P(pCR) when the
        region is hidden, in probability units (positive = supports pCR).
    lesion_level : methods whose map is one map for the whole lesion (the same array in every
        present channel): Grad-CAM of a stacked-channel CNN.
    channel_names : the C channel names, (timepoint, modality) as ``<timepoint>_<modality>``.
    """

    maps: dict[str, np.ndarray]
    lesion_level: frozenset[str]
    channel_names: tuple[str, ...]


class _BoundNet(nn.Module):
    """A network with one lesion's ``present`` [1, C] and ``covariates`` [1, K] bound (set per
    lesion): image [N, C, D, H, W] → logits [N, 1], the flags and covariates repeated N times."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval()
        self.present = torch.ones(1, 0, dtype=torch.bool)
        self.covariates = torch.zeros(1, 0)
        self.eval()

    def train(self, mode: bool = True) -> _BoundNet:
        # Always eval: MONAI's hooks and eval_mode() switch a module they found in training mode
        # back to it afterwards, which would turn batch-norm statistics and dropout on.
        return super().train(False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        n = image.shape[0]
        logits = self.net(image, self.present.expand(n, -1), self.covariates.expand(n, -1))
        return logits.reshape(n, 1)


class _OneChannel(nn.Module):
    """Feeds channel ``channel`` of ``image`` [1, C, D, H, W] from the input [N, 1, D, H, W], the
    other channels unchanged, so occluding the input occludes that channel only."""

    def __init__(self, bound: _BoundNet, image: torch.Tensor, channel: int):
        super().__init__()
        self.bound, self.image, self.channel = bound, image, channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], self.channel
        full = self.image.expand(n, *self.image.shape[1:])
        return self.bound(torch.cat([full[:, :c], x, full[:, c + 1:]], dim=1))


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def feature_map_layers(net: nn.Module, image: torch.Tensor, present: torch.Tensor,
                       covariates: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, output shape)`` of every module of ``net`` whose output is a 5-D tensor
    [N, F, d, h, w], in forward execution order, for one probe call ``net(image, present, covariates)``."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = []

    def record(name):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == 5:
                seen.append((name, tuple(output.shape)))
        return hook

    for name, module in net.named_modules():
        if name:
            handles.append(module.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            net(image, present, covariates)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def default_gradcam_layer(layers: Sequence[tuple[str, tuple[int, ...]]]) -> str:
    """The last feature map of more than one voxel (else the last feature map) of
    :func:`feature_map_layers`' list."""
    if not layers:
        raise ValueError("the network has no 3-D feature map (no module returns [N, F, d, h, w]); "
                         "Grad-CAM needs one: use methods=('occlusion',)")
    spatial = [name for name, shape in layers if int(np.prod(shape[2:])) > 1]
    return spatial[-1] if spatial else layers[-1][0]


class _ExplainedNet:
    """One network of the ensemble: its private copy, the bound wrapper, the Grad-CAM layer."""

    def __init__(self, net: nn.Module, gradcam_layer: str | None):
        with torch.inference_mode(False):
            self.copy = copy.deepcopy(net).eval()
            for parameter in self.copy.parameters():
                # Grad-CAM needs gradients to reach the target layer, also in a frozen network.
                parameter.requires_grad_(True)
        # The copy stays where the network is (CPU or GPU); inputs follow it, maps come back to the CPU.
        self.device = next((p.device for p in self.copy.parameters()), torch.device("cpu"))
        self.bound = _BoundNet(self.copy)
        self.requested_layer = gradcam_layer
        self.layer: str | None = None
        self.per_image = False
        self.gradcam: GradCAM | None = None

    def bind(self, present: torch.Tensor, covariates: torch.Tensor) -> None:
        self.bound.present, self.bound.covariates = present.to(self.device), covariates.to(self.device)

    def prepare_gradcam(self, image: torch.Tensor, covariates: torch.Tensor) -> None:
        """Choose the target layer and measure whether it sees one row per image (probe with
        every channel present); once per network."""
        if self.gradcam is not None:
            return
        all_present = torch.ones(1, image.shape[1], dtype=torch.bool, device=self.device)
        layers = feature_map_layers(self.copy, torch.zeros_like(image, device=self.device), all_present,
                                    covariates.to(self.device))
        shapes = dict(layers)
        layer = self.requested_layer or default_gradcam_layer(layers)
        if layer not in shapes:
            names = dict(self.copy.named_modules())
            why = "is not a module of the network" if layer not in names else "does not output a 3-D feature map"
            raise ValueError(f"gradcam_layer {layer!r} {why}; feature-map layers (execution order): "
                             f"{', '.join(shapes) or 'none'}")
        rows = shapes[layer][0]
        if rows not in (1, image.shape[1]):
            raise ValueError(f"gradcam_layer {layer!r} has {rows} rows for one lesion of {image.shape[1]} "
                             "images; expected 1 (a stacked-channel network) or one per image (a shared encoder)")
        self.layer, self.per_image = layer, rows == image.shape[1] and rows > 1
        self.gradcam = GradCAM(nn_module=self.bound, target_layers=f"net.{layer}", postprocessing=_identity)

    def gradcam_map(self, image: torch.Tensor, present: np.ndarray) -> np.ndarray:
        """[C, D, H, W]: this network's Grad-CAM of the pCR logit, NaN in absent channels."""
        with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
            # The image needs no gradient; torch notes that the hook then fires on outputs only,
            # which is all Grad-CAM reads.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            cam = self.gradcam(x=image.to(self.device), class_idx=0).detach()[:, 0].cpu().numpy()  # [rows, D, H, W]
        out = np.full((len(present), *image.shape[2:]), np.nan, dtype=np.float32)
        index = np.flatnonzero(present)
        if self.per_image:
            if cam.shape[0] != len(index):
                raise RuntimeError(f"Grad-CAM layer {self.layer!r} gave {cam.shape[0]} maps for "
                                   f"{len(index)} present images")
            out[index] = cam
        else:
            out[index] = cam[0]
        return out

    def occlusion_map(self, image: torch.Tensor, present: np.ndarray, occluder: dict) -> np.ndarray:
        """[C, D, H, W]: drop in P(pCR) when each region of each present channel is hidden."""
        out = np.full((len(present), *image.shape[2:]), np.nan, dtype=np.float32)
        image = image.to(self.device)
        with torch.no_grad(), warnings.catch_warnings():
            # MONAI 1.6's occlusion indexes with a list of slices, which torch marks deprecated.
            warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
            p_image = torch.sigmoid(self.bound(image))[0, 0].item()
            for c in np.flatnonzero(present):
                sensitivity = OcclusionSensitivity(nn_module=_OneChannel(self.bound, image, int(c)), **occluder)
                p_hidden, _ = sensitivity(x=image[:, c:c + 1])  # [1, 1, D, H, W]: mean P(pCR) with a window hidden
                out[c] = p_image - p_hidden.as_tensor()[0, 0].float().cpu().numpy()
        return out


class SaliencyExplainer:
    """Saliency maps of a fold ensemble's pCR prediction; build once, call per lesion.

    Parameters
    ----------
    nets : the K networks (one per fold); copied, never modified.
    methods : a subset of :data:`METHODS`.
    gradcam_layer : module name (as in each network's ``named_modules()``) of the Grad-CAM target
        layer; ``None``: :func:`default_gradcam_layer` (see the module notes).
    occlusion_mask_voxels : edge of the occluding cube in voxels. Default 6 (12 mm at 2 mm): about
        a median disappearing lesion (10 mm), so hiding it hides the lesion, yet small against a
        20-voxel patch.
    occlusion_overlap : overlap of neighbouring windows, in [0, 1); 0.5 moves the cube by half its
        edge (3 voxels: 6³ = 216 windows per channel of a 20³ patch).
    occlusion_fill : the normalised value the hidden cube is filled with (0: liver-like tissue).
    occlusion_batch : occluded copies per forward pass.
    """

    def __init__(self, nets: Sequence[nn.Module], *, methods: Sequence[str] = METHODS,
                 gradcam_layer: str | None = None, occlusion_mask_voxels: int = 6, occlusion_overlap: float = 0.5,
                 occlusion_fill: float = 0.0, occlusion_batch: int = 64):
        if not nets:
            raise ValueError("no networks to explain")
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"saliency methods must be a non-empty subset of {METHODS}, got {list(methods)}")
        if occlusion_mask_voxels < 1 or not 0 <= occlusion_overlap < 1 or occlusion_batch < 1:
            raise ValueError("occlusion_mask_voxels and occlusion_batch must be >= 1 and occlusion_overlap in "
                             f"[0, 1), got {occlusion_mask_voxels}, {occlusion_batch}, {occlusion_overlap}")
        self.methods = tuple(m for m in METHODS if m in methods)
        self.mask_voxels = int(occlusion_mask_voxels)
        self._occluder = {"mask_size": self.mask_voxels, "overlap": float(occlusion_overlap),
                          "mode": float(occlusion_fill), "n_batch": int(occlusion_batch), "verbose": False,
                          "activate": torch.sigmoid}
        self._nets = [_ExplainedNet(net, gradcam_layer) for net in nets]

    def __call__(self, image: np.ndarray, present: np.ndarray, covariates: Sequence[np.ndarray] | None,
                 channel_names: Sequence[str]) -> LesionSaliency:
        """Maps of one lesion.

        image : float32 [C, D, H, W], the normalised patch (absent channels zero-filled).
        present : bool [C]. covariates : one float32 [K_f] per network (each fold's encoding;
        ``None``: no covariates). channel_names : C names.
        """
        image_t, present, covariates_t = self._checked(image, present, covariates, channel_names)
        maps: dict[str, np.ndarray] = {}
        lesion_level: set[str] = set()
        if not present.any():
            maps = {m: np.full(image.shape, np.nan, dtype=np.float32) for m in self.methods}
            return LesionSaliency(maps, frozenset(), tuple(channel_names))
        present_t = torch.as_tensor(present)[None]
        per_net: dict[str, list[np.ndarray]] = {m: [] for m in self.methods}
        for explained, cov in zip(self._nets, covariates_t, strict=True):
            explained.bind(present_t, cov)
            if "gradcam" in self.methods:
                explained.prepare_gradcam(image_t, cov)
                cam = explained.gradcam_map(image_t, present)
                peak = np.nanmax(cam)
                per_net["gradcam"].append(cam / peak if peak > 0 else np.where(np.isnan(cam), np.nan, 0.0))
            if "occlusion" in self.methods:
                per_net["occlusion"].append(explained.occlusion_map(image_t, present, self._occluder))
        for method, arrays in per_net.items():
            maps[method] = np.mean(arrays, axis=0).astype(np.float32)
        if "gradcam" in self.methods and not any(n.per_image for n in self._nets) and len(present) > 1:
            lesion_level.add("gradcam")
        return LesionSaliency(maps, frozenset(lesion_level), tuple(channel_names))

    def _checked(self, image, present, covariates, channel_names):
        image = np.asarray(image, dtype=np.float32)
        present = np.asarray(present, dtype=bool)
        if image.ndim != 4 or present.shape != image.shape[:1] or len(channel_names) != image.shape[0]:
            raise ValueError(f"expected image [C, D, H, W], present [C] and C channel names; got image "
                             f"{image.shape}, present {present.shape}, {len(channel_names)} names")
        if "occlusion" in self.methods and min(image.shape[1:]) < self.mask_voxels:
            raise ValueError(f"occlusion_mask_voxels {self.mask_voxels} exceeds the patch {image.shape[1:]}")
        if covariates is None:
            covariates = [np.zeros(0, dtype=np.float32)] * len(self._nets)
        if len(covariates) != len(self._nets):
            raise ValueError(f"{len(self._nets)} networks but {len(covariates)} covariate vectors (one per network)")
        covariates_t = [torch.as_tensor(np.asarray(c, dtype=np.float32).reshape(1, -1)) for c in covariates]
        return torch.from_numpy(image.copy())[None], present, covariates_t


def lesion_saliency(nets: Sequence[nn.Module], image: np.ndarray, present: np.ndarray,
                    covariates: Sequence[np.ndarray] | None, channel_names: Sequence[str], *,
                    methods: Sequence[str] = METHODS, gradcam_layer: str | None = None,
                    occlusion_mask_voxels: int = 6, occlusion_overlap: float = 0.5, occlusion_fill: float = 0.0,
                    occlusion_batch: int = 64) -> LesionSaliency:
    """One lesion's saliency maps (:class:`SaliencyExplainer` for one call; build the explainer
    once to explain many lesions without copying the networks each time)."""
    explainer = SaliencyExplainer(nets, methods=methods, gradcam_layer=gradcam_layer,
                                  occlusion_mask_voxels=occlusion_mask_voxels, occlusion_overlap=occlusion_overlap,
                                  occlusion_fill=occlusion_fill, occlusion_batch=occlusion_batch)
    return explainer(image, present, covariates, channel_names)
