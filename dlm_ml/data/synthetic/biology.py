"""One synthetic patient: clinical covariates, latent response, lesions through the
three timepoints, outcomes and readings, plus everything needed to render its
images (a picklable :class:`PatientSpec`).

Random draws come from independent streams (biology, geometry, placement,
rendering, motion) spawned from the patient's ``SeedSequence``, and every draw is made
whatever the config values (the misalignment switches included), so changing an effect size never reshuffles the
other draws: the ``null`` preset has the same images and readings as ``default``
for a given seed, only pCR differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri  # = scipy.stats.norm.cdf / .ppf, without importing scipy.stats (0.5 s)

from dlm_ml.data.cohort import schema
from dlm_ml.data.synthetic.anatomy import Anatomy, Tissue, place_lesions, sample_anatomy
from dlm_ml.data.synthetic.config import SynthConfig
from dlm_ml.data.synthetic.geometry import (
    IDENTITY3,
    ImageGrid,
    ImageSpec,
    VisitPose,
    build_grid,
    image_relpath,
    random_rotation,
    random_vector,
    rigid_about,
)
from dlm_ml.data.synthetic.readers import read_lesions

TP_BASE, TP_PRE, TP_FU = schema.TIMEPOINTS


@dataclass
class PatientSpec:
    """Everything to render one patient's images, plus its table rows."""

    patient_id: str
    anatomy: Anatomy
    images: list[ImageSpec]
    tissues: dict[tuple[str, str], Tissue]
    # per (timepoint, modality): [(centre, diameter_mm, value)] in lesion order
    lesion_draws: dict[tuple[str, str], list[tuple[tuple[float, float, float], float, float]]]
    render_seed: np.random.SeedSequence
    edge_mm: float
    rows: dict[str, list[dict]] = field(default_factory=dict)


def lesion_ids(n: int) -> list[str]:
    return [f"L{i + 1}" for i in range(n)]


def visibility_probability(d_mm: np.ndarray, config: SynthConfig) -> np.ndarray:
    v = config.visibility
    return 1.0 / (1.0 + np.exp(-v.slope_per_mm * (np.asarray(d_mm) - v.d50_mm)))


def sample_poses(config: SynthConfig, anatomy: Anatomy, rng: np.random.Generator) -> dict[tuple[str, str], VisitPose]:
    """True pose (image physical → anatomy) of every (timepoint, modality) image.

    The baseline CT defines anatomy space (identity). A later visit moves the patient
    rigidly about the liver; the ADC map of a visit is moved again against that visit's
    CT; every image but the baseline CT has its own breath-hold (a breathing bump).
    All draws are made whatever ``geometry.misalignment``; without it every pose is the identity.
    """
    mo = config.geometry.motion
    centre = np.asarray(anatomy.right_lobe.center)
    sigma = mo.breathing_sigma_mm * config.anatomy.scale
    poses = {}
    for tp in schema.TIMEPOINTS:
        visit_r = random_rotation(mo.rotation_deg, rng)
        visit_t = random_vector(mo.translation_mm, rng)
        adc_r = random_rotation(mo.adc_rotation_deg, rng)
        adc_t = random_vector(mo.adc_translation_mm, rng)
        breath = rng.uniform(-1, 1, (2, 3)) * mo.breathing_mm * np.array([0.2, 0.4, 1.0])
        if tp == schema.REFERENCE_TIMEPOINT:
            visit_r, visit_t = np.eye(3), np.zeros(3)
            breath[0] = 0.0  # the baseline CT is the reference: no motion at all
        rot, trans = rigid_about(visit_r, visit_t, centre)
        ct = VisitPose(tuple(rot.ravel()), tuple(trans), tuple(breath[0]), tuple(centre), sigma)
        # ADC physical → this visit's CT physical: a rigid motion about the liver as the CT sees it
        centre_ct = ct.inverse_apply(centre)
        q_rot, q_trans = rigid_about(adc_r, adc_t, centre_ct)
        a_rot, a_trans = ct.compose_rigid(q_rot, q_trans)
        adc = VisitPose(tuple(a_rot.ravel()), tuple(a_trans), tuple(breath[1]), tuple(centre), sigma)
        for mod, pose in (("ct", ct), ("adc", adc)):
            if not config.geometry.misalignment:
                pose = VisitPose()
            poses[(tp, mod)] = pose
    return poses


def sample_grid(config: SynthConfig, modality: str, center: np.ndarray, rng: np.random.Generator) -> ImageGrid:
    """One image's grid around the physical point ``center``: per-image spacing, field of
    view and flipped axes with ``geometry.vary_grids`` (draws made in any case)."""
    g = getattr(config.geometry, modality)
    inplane = rng.uniform(*g.inplane_spacing_mm)
    thick = rng.uniform(*g.slice_spacing_mm)
    fov_scale = 1 + rng.uniform(-g.fov_jitter, g.fov_jitter, 3)
    flips = np.where(rng.uniform(size=3) < g.flip_probability, -1.0, 1.0)
    if config.geometry.vary_grids:
        spacing = (round(inplane, 3), round(inplane, 3), round(thick, 2))
        fov = np.asarray(g.fov_mm) * fov_scale
        direction = tuple(float(v) for v in np.diag(flips).ravel())
    else:
        spacing, fov, direction = g.spacing_mm, g.fov_mm, IDENTITY3
    return build_grid(center, fov, spacing, g.origin_jitter_mm, rng, direction)


def simulate_patient(index: int, config: SynthConfig, seed: np.random.SeedSequence) -> PatientSpec:
    # spawn(k) leaves the first streams as a smaller spawn made them: motion came fifth, the observed
    # measurements (presurgery diameter, enrolment date) last, so adding them changed nothing else
    bio_ss, geom_ss, place_ss, render_ss, motion_ss, measure_ss = seed.spawn(6)
    rng = np.random.default_rng(bio_ss)
    ef, it, cl, lc = config.effects, config.intensity, config.clinical, config.lesions
    pid = f"P{index + 1:04d}"

    # --- patient level -------------------------------------------------------
    site = int(rng.choice(len(cl.sites), p=np.asarray(cl.site_weights) / sum(cl.site_weights)))
    age = int(np.clip(np.round(rng.normal(61, 10)), 28, 88))
    sex = "M" if rng.uniform() < 0.6 else "F"
    regimen = cl.regimens[int(rng.choice(len(cl.regimens), p=np.asarray(cl.regimen_weights) / sum(cl.regimen_weights)))]
    cycles = int(np.clip(np.round(rng.normal(8, 2)), 4, 12))
    cea0 = float(cl.cea_median * np.exp(cl.cea_log_sd * rng.standard_normal()))
    cea_eps = rng.standard_normal()
    u, u2 = rng.normal(0.0, np.sqrt(ef.icc), 2)  # patient effects: response, pCR-only latent
    liver_hu0 = it.liver_hu_mean + it.liver_hu_sd * np.clip(rng.standard_normal(), -2.5, 2.5)
    liver_hu1 = liver_hu0 + it.liver_hu_chemo_change + it.liver_hu_chemo_change_sd * rng.standard_normal()
    liver_adc = it.adc_liver_mean + it.adc_liver_sd * rng.standard_normal()
    liver_adc_t = liver_adc * (1 + 0.02 * rng.standard_normal(3))
    weights = np.asarray(lc.count_weights, float)
    n = int(rng.choice(len(weights), p=weights / weights.sum())) + 1

    # --- lesion level (all draws made, whatever the config) -----------------------------
    e, e2 = rng.normal(0.0, np.sqrt(1 - ef.icc), (2, n))
    eps_pcr = rng.standard_normal(n)
    log_d0 = np.log(lc.diameter_median_mm) + lc.diameter_log_sd * rng.standard_normal(n)
    z_shrink, z_c0, z_c1, z_adc0, z_chg, z_grow = rng.standard_normal((6, n))
    u_vis, u_invis, u_resect, u_scar = rng.uniform(size=(4, n))
    missing_u = rng.uniform(size=5)
    shared, reader_eps = rng.standard_normal(n), rng.standard_normal((config.readers.n_readers, n))
    z_roi = rng.standard_normal((2, n))

    L = u + e
    L_other = u2 + e2
    rho = ef.pcr_coupling
    p = config.outcomes.pcr_prevalence
    tau = ndtri(1 - p) * np.sqrt(1 + ef.pcr_noise ** 2)
    pcr = (rho * L + np.sqrt(1 - rho ** 2) * L_other + ef.pcr_noise * eps_pcr > tau).astype(int)
    R = ndtr((L - ndtri(1 - p)) / ef.response_width)  # response degree in [0, 1]

    d0 = np.clip(np.exp(log_d0), lc.diameter_min_mm, lc.diameter_max_mm)
    shrink = ef.shrink_nonresponder + (ef.shrink_responder - ef.shrink_nonresponder) * R + ef.shrink_noise * z_shrink
    d1 = d0 * np.exp(-shrink)
    # viable lesions left in place regrow (capped: follow-up is 3-4 months)
    d_regrow = np.minimum(np.maximum(d1, 3.0) * np.exp(lc.regrowth_log_mean + lc.regrowth_log_sd * z_grow), 1.2 * d0)
    d_cavity = np.clip(0.8 * d1 + 6.0, 6.0, 40.0)
    d_scar = d1 * (0.5 + 0.5 * u_scar)

    # --- geometry and placement ------------------------------------------------------
    grng = np.random.default_rng(geom_ss)
    anatomy = sample_anatomy(config, grng)
    poses = sample_poses(config, anatomy, np.random.default_rng(motion_ss))
    grids = {}
    for tp in schema.TIMEPOINTS:
        for mod in schema.MODALITIES:
            # the field of view is centred on the patient as this acquisition sees it
            center = poses[(tp, mod)].inverse_apply(np.asarray(anatomy.fov_center))
            grids[(tp, mod)] = sample_grid(config, mod, center, grng)
    extents = np.max([d0, d1, d_regrow, d_cavity], axis=0)
    centres, factor = place_lesions(anatomy, extents, [(grids[k], poses[k]) for k in grids], config,
                                    np.random.default_rng(place_ss))
    d0, d1, d_regrow, d_cavity, d_scar = (d * factor for d in (d0, d1, d_regrow, d_cavity, d_scar))
    d0 = np.round(d0, 1)

    # --- presurgery appearance -------------------------------------------------------
    # Conspicuity is a property of the lesion: a lesion seen at baseline (diameter
    # d0) has u ~ U(0, P_detect(d0)) and stays visible while u < P_detect(d). So
    # lesions that do not shrink stay visible; P(disappear) = 1 - P(d1) / P(d0).
    p_vis0 = visibility_probability(d0, config)
    p_vis = np.minimum(visibility_probability(d1, config) / p_vis0, 1.0)
    visible = (u_vis * p_vis0 < visibility_probability(d1, config)).astype(int)
    vis = config.visibility
    c0 = np.maximum(it.lesion_contrast_hu_mean + it.lesion_contrast_hu_sd * z_c0, it.lesion_contrast_hu_min)
    resid = ef.ct_contrast_residual_nonresponder \
        + (ef.ct_contrast_residual_responder - ef.ct_contrast_residual_nonresponder) * R
    c1 = np.where(visible == 1,
                  np.maximum(c0 * resid * np.exp(ef.ct_contrast_noise * z_c1), vis.visible_min_contrast_hu),
                  vis.invisible_contrast_hu * u_invis)
    adc0 = np.clip(it.adc_lesion_mean + ef.adc_baseline_shift * R + it.adc_lesion_sd * z_adc0, 500, 2500)
    chg = ef.adc_change_nonresponder + (ef.adc_change - ef.adc_change_nonresponder) * R + ef.adc_change_noise * z_chg
    adc1 = adc0 * (1 + chg)

    # --- surgery and follow-up ---------------------------------------------------------
    out = config.outcomes
    resected = (u_resect < np.where(visible == 1, out.resect_visible, out.resect_disappeared)).astype(int)
    fu_kind = np.where(resected == 1, "cavity", np.where(pcr == 1, "scar", "regrowth"))
    d_fu = np.select([resected == 1, pcr == 1], [d_cavity, d_scar], d_regrow)

    # --- images present / missing --------------------------------------------------
    miss = config.missing
    present = {}
    k = 0
    for tp in schema.TIMEPOINTS:
        for mod in schema.MODALITIES:
            if (tp, mod) == (schema.REFERENCE_TIMEPOINT, schema.REFERENCE_MODALITY):
                present[(tp, mod)] = True
                continue
            present[(tp, mod)] = bool(missing_u[k] >= (miss.adc if mod == "adc" else miss.ct))
            k += 1
    images = [ImageSpec(tp, mod, grids[(tp, mod)], poses[(tp, mod)], present=present[(tp, mod)],
                        path=image_relpath(pid, tp, mod, compressed=config.compress_images)) for (tp, mod) in grids]

    # --- tissues and lesion values per image -----------------------------------------
    noise_ct = cl.site_ct_noise_hu[site]
    scale = cl.site_adc_scale[site]
    liver_hu = {TP_BASE: liver_hu0, TP_PRE: liver_hu1, TP_FU: (liver_hu0 + liver_hu1) / 2}
    tissues = {}
    for ti, tp in enumerate(schema.TIMEPOINTS):
        tissues[(tp, "ct")] = Tissue(it.ct_air_hu, it.ct_fat_hu, it.ct_soft_tissue_hu, it.ct_bone_hu,
                                     it.ct_cortex_hu, it.ct_aorta_hu, float(liver_hu[tp]), noise_ct,
                                     kidney=it.ct_kidney_hu, disc=it.ct_disc_hu, vessel=it.ct_vessel_hu)
        tissues[(tp, "adc")] = Tissue(0.0, it.adc_fat * scale, it.adc_soft_tissue * scale, it.adc_bone * scale,
                                      it.adc_bone * scale, it.adc_aorta * scale, float(liver_adc_t[ti] * scale),
                                      it.adc_noise, kidney=it.adc_kidney * scale, disc=it.adc_disc * scale,
                                      vessel=it.adc_vessel * scale, background_sd=it.adc_background)
    adc_fu = np.select([resected == 1, pcr == 1], [np.full(n, it.adc_cavity), adc1], adc0)
    ct_fu = np.select([resected == 1, pcr == 1],
                      [np.full(n, it.cavity_hu), liver_hu[TP_FU] - vis.invisible_contrast_hu * u_invis],
                      liver_hu[TP_FU] - c0)
    values = {
        (TP_BASE, "ct"): (d0, liver_hu0 - c0), (TP_PRE, "ct"): (d1, liver_hu1 - c1), (TP_FU, "ct"): (d_fu, ct_fu),
        (TP_BASE, "adc"): (d0, adc0 * scale), (TP_PRE, "adc"): (d1, adc1 * scale),
        (TP_FU, "adc"): (d_fu, adc_fu * scale),
    }
    cts = [tuple(float(v) for v in c) for c in centres]
    draws = {key: [(cts[i], float(d[i]), float(v[i])) for i in range(n)] for key, (d, v) in values.items()}

    # --- readers (presurgery CT + ADC as the scanner shows it) ----------------------------
    # ADC change as measured: ratio of the two maps' values plus measurement noise
    # (test-retest SD over a small ROI), unknown when either map is missing.
    adc_seen = present[(TP_PRE, "adc")] and present[(TP_BASE, "adc")]
    adc_ratio = (adc1 + it.adc_noise * z_roi[0]) / (adc0 + it.adc_noise * z_roi[1]) - 1
    scores, calls = read_lesions(visible, d1, adc_ratio if adc_seen else None, shared, reader_eps, config.readers)

    # --- what the site records: presurgery CT diameter (0 = no longer seen), enrolment date ----------
    mrng = np.random.default_rng(measure_ss)
    d1_measured = np.where(visible == 1, np.maximum(d1 + lc.measurement_sd_mm * mrng.standard_normal(n), 1.0), 0.0)
    enrolment = np.datetime64(cl.enrolment_start) + np.timedelta64(
        int((index + mrng.uniform()) * cl.enrolment_days_per_patient), "D")

    # --- rows -------------------------------------------------------------------------------
    ids = lesion_ids(n)
    mean_R = float(R.mean())
    cea1 = cea0 * np.exp(-(0.3 + cl.cea_response * mean_R) + cl.cea_noise * cea_eps)
    rows: dict[str, list[dict]] = {
        "patients": [dict(patient_id=pid, site=cl.sites[site], age=age, sex=sex, cea_baseline=round(cea0, 1),
                          cea_presurgery=round(float(cea1), 1), chemo_regimen=regimen, chemo_cycles=cycles,
                          enrolment_date=str(enrolment))],
        "images": [dict(patient_id=pid, timepoint=s.timepoint, modality=s.modality,
                        path=s.path) for s in images if s.present],
        "lesions": [dict(patient_id=pid, lesion_id=ids[i], x_mm=round(cts[i][0], 2), y_mm=round(cts[i][1], 2),
                         z_mm=round(cts[i][2], 2), diameter_mm=float(d0[i]),
                         diameter_presurgery_mm=round(float(d1_measured[i]), 1), mask_path=mask_relpath(pid),
                         mask_label=i + 1) for i in range(n)],
        "outcomes": [dict(patient_id=pid, lesion_id=ids[i], pcr=int(pcr[i]),
                          reference="pathology" if resected[i] else "follow_up", resected=int(resected[i]))
                     for i in range(n)],
        "readings": [dict(reader_id=f"R{r + 1}", patient_id=pid, lesion_id=ids[i], score=int(scores[r, i]),
                          call=int(calls[r, i])) for r in range(config.readers.n_readers) for i in range(n)],
        "truth_lesions": [dict(patient_id=pid, lesion_id=ids[i], latent_response=round(float(L[i]), 4),
                               response_degree=round(float(R[i]), 4), pcr_latent_other=round(float(L_other[i]), 4),
                               pcr=int(pcr[i]), diameter_baseline_mm=float(d0[i]),
                               diameter_presurgery_mm=round(float(d1[i]), 2),
                               diameter_followup_mm=round(float(d_fu[i]), 2), followup_kind=str(fu_kind[i]),
                               visible_presurgery=int(visible[i]), p_visible_presurgery=round(float(p_vis[i]), 4),
                               ct_contrast_baseline_hu=round(float(c0[i]), 2),
                               ct_contrast_presurgery_hu=round(float(c1[i]), 2),
                               adc_baseline=round(float(adc0[i]), 1), adc_presurgery=round(float(adc1[i]), 1),
                               adc_followup=round(float(adc_fu[i]), 1), resected=int(resected[i]),
                               size_factor=round(float(factor[i]), 4)) for i in range(n)],
        "truth_patients": [dict(patient_id=pid, patient_effect=round(float(u), 4),
                                patient_effect_other=round(float(u2), 4), mean_response_degree=round(mean_R, 4),
                                liver_hu_baseline=round(float(liver_hu0), 2),
                                liver_hu_presurgery=round(float(liver_hu1), 2),
                                liver_adc=round(float(liver_adc), 1), ct_noise_hu=noise_ct, adc_scale=scale,
                                **anatomy.as_record())],
        "truth_images": [dict(patient_id=pid, timepoint=s.timepoint, modality=s.modality,
                              path=s.path, present=int(s.present),
                              **s.grid.as_record(), **s.pose.as_record()) for s in images],
        # where each lesion centre really lies in each image's own physical space
        "truth_lesion_positions": [dict(patient_id=pid, lesion_id=ids[i], timepoint=s.timepoint,
                                        modality=s.modality, **{f"{ax}_mm": round(float(v), 3) for ax, v in
                                                                zip("xyz", s.pose.inverse_apply(centres[i]))})
                                   for s in images if s.present for i in range(n)],
    }
    return PatientSpec(pid, anatomy, images, tissues, draws, render_ss, config.anatomy.edge_mm, rows)


def mask_relpath(patient_id: str) -> str:
    """Lesion label map on the baseline CT grid (label = lesion number)."""
    return f"masks/{patient_id}/baseline_ct_lesions.nii.gz"


def liver_mask_relpath(patient_id: str) -> str:
    return f"{schema.TRUTH_DIR}/masks/{patient_id}_liver.nii.gz"
