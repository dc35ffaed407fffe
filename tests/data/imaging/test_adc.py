"""ADC fit: exact on mono-exponential data, perfusion exclusion, noise floor,
and agreement with the Siemens scanner map on PROSTATEx (README §1)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from dlm_ml.data.imaging import adc, dicom

from ..refdata import PX_ADC, PX_DWI, need

B = np.array([0.0, 50.0, 400.0, 800.0, 1000.0])


def _mono(shape=(6, 7, 8), seed=0):
    rng = np.random.default_rng(seed)
    s0 = rng.uniform(200, 2000, shape)
    d_um2_s = rng.uniform(200, 3500, shape)
    signal = s0[None] * np.exp(-B.reshape(-1, 1, 1, 1) * d_um2_s[None] * 1e-6)
    return signal, d_um2_s


@pytest.mark.parametrize("weighting", adc.WEIGHTINGS)
def test_exact_mono_exponential(weighting):
    signal, truth = _mono()
    fitted, info = adc.fit_adc_array(signal, B, weighting=weighting, noise_floor=0.0)
    assert fitted.dtype == np.float32 and fitted.shape == truth.shape
    np.testing.assert_allclose(fitted, truth, rtol=1e-4)
    assert info.n_fitted == truth.size and info.b_values_used == tuple(B)


def test_fit_adc_images_keeps_the_dwi_grid():
    signal, truth = _mono((4, 5, 6))
    images = {}
    for b, s in zip(B, signal):
        im = sitk.GetImageFromArray(s.astype(np.float32))
        im.SetSpacing((2.0, 2.0, 3.0))
        im.SetOrigin((-10.0, 5.0, 7.5))
        im.SetDirection((1, 0, 0, 0, 0.8, -0.6, 0, 0.6, 0.8))
        images[float(b)] = im
    out, _ = adc.fit_adc(images, noise_floor=0.0)
    assert out.GetPixelID() == sitk.sitkFloat32
    assert out.GetSpacing() == (2.0, 2.0, 3.0) and out.GetOrigin() == (-10.0, 5.0, 7.5)
    np.testing.assert_allclose(out.GetDirection(), images[0.0].GetDirection())
    np.testing.assert_allclose(sitk.GetArrayFromImage(out), truth, rtol=1e-4)


def test_low_b_exclusion_removes_perfusion():
    # IVIM: 20 % of the signal decays with pseudo-diffusion D* = 20000 µm²/s.
    b = np.array([0.0, 50.0, 100.0, 200.0, 400.0, 800.0])
    d, d_star, f = 1100.0, 20000.0, 0.2
    s = 1000 * ((1 - f) * np.exp(-b * d * 1e-6) + f * np.exp(-b * d_star * 1e-6))
    signal = np.broadcast_to(s.reshape(-1, 1), (b.size, 10)).copy()
    all_b, _ = adc.fit_adc_array(signal, b, noise_floor=0.0)
    high_b, info = adc.fit_adc_array(signal, b, min_b_value=200, noise_floor=0.0)
    assert all_b[0] > 1.15 * d  # perfusion inflates ADC
    assert high_b[0] == pytest.approx(d, rel=0.01)
    assert info.b_values_used == (200.0, 400.0, 800.0) and info.b_values_excluded == (0.0, 50.0, 100.0)
    with pytest.raises(ValueError, match="at least two distinct b-values"):
        adc.fit_adc_array(signal, b, min_b_value=500)


def test_noise_floor_masks_background():
    rng = np.random.default_rng(1)
    shape = (20, 40, 40)
    body = np.zeros(shape, bool)
    body[:, 10:30, 10:30] = True
    truth = 1200.0
    sigma = 10.0
    signal = []
    for b in (0.0, 500.0, 1000.0):
        clean = np.where(body, 800 * np.exp(-b * truth * 1e-6), 0.0)
        # Magnitude images: Rician noise (Rayleigh in the background).
        noisy = np.hypot(clean + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))
        signal.append(noisy)
    fitted, info = adc.fit_adc_array(np.stack(signal), [0.0, 500.0, 1000.0])
    assert sigma < info.noise_floor < 800
    assert np.mean(fitted[~body] == 0) > 0.99
    assert np.median(fitted[body]) == pytest.approx(truth, rel=0.03)
    # Points at or below zero are dropped; with two points left the fit is exact.
    s = np.array([[1000.0], [1000.0 * np.exp(-0.5)], [0.0]])
    one, _ = adc.fit_adc_array(s, [0.0, 500.0, 1000.0], noise_floor=0.0)
    assert one[0] == pytest.approx(1000.0, rel=1e-5)


def test_trace_is_geometric_mean_over_directions():
    rng = np.random.default_rng(2)
    shape = (3, 4, 5)
    s0 = rng.uniform(500, 1500, shape)
    directional = [rng.uniform(300, 2500, shape) for _ in range(6)]

    def image(arr):
        return sitk.GetImageFromArray(arr.astype(np.float32))

    dwi = dicom.DwiSet(
        volumes={0.0: [image(s0)], 1000.0: [image(s0 * np.exp(-1000e-6 * d)) for d in directional]},
        b_value_sources={0.0: ("ge_private_0043_1039",), 1000.0: ("public_0018_9087",)},
        headers=[],
    )
    out, _ = adc.fit_adc(dwi.trace(), noise_floor=0.0)
    # log-linear ADC of the geometric-mean trace = mean directional ADC (mean diffusivity)
    np.testing.assert_allclose(sitk.GetArrayFromImage(out), np.mean(directional, axis=0), rtol=1e-3)


@pytest.fixture(scope="module")
def prostatex(refdata):
    dwi = dicom.load_dwi(need(refdata, PX_DWI))
    scanner = sitk.GetArrayFromImage(dicom.read_dicom_series(need(refdata, PX_ADC))).astype(np.float64)
    trace = dwi.trace()
    # README §1: voxels where S(b50) > 100 and the scanner ADC > 0 (n = 8102).
    mask = (sitk.GetArrayFromImage(trace[50.0]) > 100) & (scanner > 0)
    return trace, scanner, mask


def test_prostatex_default_fit_agrees_with_scanner(prostatex):
    trace, scanner, mask = prostatex
    assert sorted(trace) == [50.0, 400.0, 800.0] and int(mask.sum()) == 8102
    image, info = adc.fit_adc(trace)
    assert info.weighting == adc.DEFAULT_WEIGHTING
    stats = adc.compare_adc(sitk.GetArrayFromImage(image), scanner, mask)
    assert stats["pearson_r"] > 0.99
    assert stats["median_rel_diff"] < 0.05
    assert np.all(sitk.GetArrayFromImage(image)[mask] > 0)  # the noise floor does not cut into the body


def test_prostatex_ordinary_fit_reproduces_readme(prostatex):
    trace, scanner, mask = prostatex
    image, _ = adc.fit_adc(trace, weighting="none")
    stats = adc.compare_adc(sitk.GetArrayFromImage(image), scanner, mask)
    # README: r = 0.9997, median |difference| 53 µm²/s, median scanner ADC 2352.
    assert stats["pearson_r"] > 0.9995
    assert stats["median_abs_diff_um2_s"] == pytest.approx(53, abs=2)
    assert stats["median_reference_um2_s"] == pytest.approx(2352, abs=1)


def test_agreement_command_prints_the_figures(refdata, capsys):
    assert adc.main([str(need(refdata, PX_DWI)), str(need(refdata, PX_ADC))]) == 0
    out = capsys.readouterr().out
    assert "voxels compared: 8102" in out and "median scanner ADC 2352" in out
    rows = {line.split()[0] + line.split()[1]: line.split() for line in out.splitlines()[2:]}
    assert set(rows) == {w + b for w in adc.WEIGHTINGS for b in ("50/400/800", "400/800")}
    assert float(rows["none50/400/800"][2]) > 0.9995
