"""What the radiomics features are computed from, and how (one frozen dataclass, built by Hydra).

IBSI choices stated once here:

* **Interpolation**: every image is resampled once, through its registration into baseline CT
  space, onto an isotropic grid of ``spacing_mm`` with linear interpolation (the patches' own
  resampling, :func:`dlm_ml.data.patches.resample_patch`). A mask ROI is resampled as a 0/1
  float image with linear interpolation and kept where ≥ ``mask_threshold`` (IBSI: partial-volume
  threshold 0.5).
* **Discretisation**: fixed bin size per modality in calibrated units (CT: HU, lower bound
  −1000 HU; ADC: µm²/s, lower bound 0), ``bin_width`` wide. CT intensities are rounded to
  integer HU by mirp after interpolation (IBSI); ADC is kept as is (negative values clipped to 0).
* **Texture**: 3-D matrices merged over the 13 directions (mirp's 3-D default), distance 1 voxel.
* **No image filters** (wavelets, LoG): features of the resampled intensities only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dlm_ml.data.cohort import schema

#: mirp feature families computed per (image, region): first-order statistics and texture.
DEFAULT_FAMILIES: tuple[str, ...] = ("statistics", "glcm", "glrlm", "glszm")

#: Per modality: the mirp modality (it sets rounding and clipping), the fixed bin width and the
#: lower bound of the first bin in source units, the value outside an image's field of view.
DEFAULT_INTENSITY: dict[str, dict] = {
    "ct": {"mirp_modality": "ct", "bin_width": 25.0, "bin_lower_bound": -1000.0},     # HU
    "adc": {"mirp_modality": "adc", "bin_width": 50.0, "bin_lower_bound": 0.0},        # µm²/s
}


@dataclass(frozen=True)
class RadiomicsConfig:
    """Regions, sampling and feature families of the per-lesion radiomics features.

    Attributes
    ----------
    timepoints, modalities : tuple of str
        The images read per lesion, (timepoint, modality), timepoint-major.
    spacing_mm : float
        Isotropic voxel spacing (mm) of the grid every image and region is sampled on.
    ring_mm : float
        Thickness (mm) of the peritumoral ring: voxels within ``ring_mm`` outside the ROI
        (Euclidean distance between voxel centres). 0 = no ring region.
    margin_mm : float
        Extra margin (mm) of the crop beyond ROI extent + ring, so the ring is never cut.
    mask_threshold : float
        A mask ROI resampled linearly keeps the voxels where it is ≥ this (IBSI: 0.5).
    min_coverage : float
        Fraction of a region's voxels an image must cover (its field of view); below it that
        image's features for the lesion are NaN. Partly covered regions are reported.
    families : tuple of str
        mirp feature families per (image, region) (mirp's ``base_feature_families`` names);
        empty: the ROI means only, without mirp (what the ADC-change rule reads).
    morphology : bool
        Also compute mirp's 3-D morphology of the ROI, once per lesion (regions are the same at
        every timepoint). Off by default: Moran's I and Geary's C make it 1–7 s per lesion of
        fewer than ~1000 voxels. The intensity-weighted morphology features are dropped.
    intensity : dict
        Modality → ``{mirp_modality, bin_width, bin_lower_bound}`` (see ``DEFAULT_INTENSITY``).
    delta_pairs : tuple of (earlier, later)
        Timepoint pairs giving delta features later − earlier.
    allow_post_decision : bool
        ``followup`` belongs to the reference standard; refused unless set (as ``PatchConfig``).
    """

    timepoints: tuple[str, ...] = ("baseline", "presurgery")
    modalities: tuple[str, ...] = ("ct", "adc")
    spacing_mm: float = 1.0
    ring_mm: float = 5.0
    margin_mm: float = 2.0
    mask_threshold: float = 0.5
    min_coverage: float = 0.9
    families: tuple[str, ...] = DEFAULT_FAMILIES
    morphology: bool = False
    intensity: dict = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_INTENSITY.items()})
    delta_pairs: tuple[tuple[str, str], ...] = (("baseline", "presurgery"),)
    allow_post_decision: bool = False

    def __post_init__(self):
        object.__setattr__(self, "timepoints", tuple(self.timepoints))
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "delta_pairs", tuple(tuple(p) for p in self.delta_pairs))
        object.__setattr__(self, "intensity", {m: dict(v) for m, v in self.intensity.items()})
        schema.check_input_timepoints(self.timepoints, self.allow_post_decision)
        missing = [m for m in self.modalities if m not in self.intensity]
        if missing:
            raise ValueError(f"no intensity settings (bin_width, ...) configured for modality(ies) {missing}")
        for m in self.modalities:
            keys = {"mirp_modality", "bin_width", "bin_lower_bound"}
            if set(self.intensity[m]) != keys:
                raise ValueError(f"intensity.{m} must have exactly the keys {sorted(keys)}, "
                                 f"got {sorted(self.intensity[m])}")
            if float(self.intensity[m]["bin_width"]) <= 0:
                raise ValueError(f"intensity.{m}.bin_width must be positive")
        if self.spacing_mm <= 0 or self.ring_mm < 0 or self.margin_mm < 0:
            raise ValueError("spacing_mm must be positive, ring_mm and margin_mm non-negative")
        if not 0 < self.mask_threshold <= 1 or not 0 < self.min_coverage <= 1:
            raise ValueError("mask_threshold and min_coverage must lie in (0, 1]")
        for pair in self.delta_pairs:
            if len(pair) != 2 or pair[0] == pair[1] or any(t not in self.timepoints for t in pair):
                raise ValueError(f"delta pair {list(pair)} must be two different timepoints of {list(self.timepoints)}")
            if schema.TIMEPOINTS.index(pair[0]) > schema.TIMEPOINTS.index(pair[1]):
                raise ValueError(f"delta pair {list(pair)} must be (earlier, later)")

    @property
    def regions(self) -> tuple[str, ...]:
        """``roi``, plus ``ring`` when ``ring_mm`` > 0."""
        return ("roi", "ring") if self.ring_mm > 0 else ("roi",)

    @property
    def images(self) -> list[tuple[str, str]]:
        """(timepoint, modality) pairs, timepoint-major."""
        return [(t, m) for t in self.timepoints for m in self.modalities]

    def to_dict(self) -> dict:
        """Plain JSON-able values (lists, not tuples): the cache key and the manifest."""
        d = asdict(self)
        for key in ("timepoints", "modalities", "families"):
            d[key] = list(d[key])
        d["delta_pairs"] = [list(p) for p in self.delta_pairs]
        return d
