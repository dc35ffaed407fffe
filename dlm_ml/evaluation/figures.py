"""Figures people would rather look at than read, saved as PNG (written atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training nodes and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.special import expit, logit  # noqa: E402

from dlm_ml.evaluation.sections import LEAVE_ALL, MODEL, RESECT_ALL  # noqa: E402
from dlm_ml.stats import roc_auc, roc_curve_points  # noqa: E402
from dlm_ml.utils.figures import save_figure  # noqa: E402


def roc_with_readers(truth, prob, readers, path, title: str | None = None, *, band=None,
                     matched=None, model_name: str = MODEL) -> Path:
    """ROC curve of the model with each reader's operating point.

    Parameters
    ----------
    truth, prob : arrays [n] — pcr (0/1) and the model's P(pCR).
    readers : list of (name, false_positive_rate, true_positive_rate) — a reader's binary call
        as a point; positive = read as complete response.
    band : (fpr, tpr_low, tpr_high, label), optional
        A pointwise confidence band of the model's curve (e.g. patient bootstrap), drawn shaded.
    matched : list of (name, false_positive_rate, true_positive_rate), optional
        The model's operating point at the threshold matched to reader ``name``; drawn as an
        open marker in that reader's colour so that each pair can be compared at a glance.
    model_name : str — the model's name in the legend and the default title.
    """
    curve = roc_curve_points(truth, prob)
    fig, ax = plt.subplots(figsize=(5, 5))
    if band is not None:
        fpr_grid, low, high, label = band
        ax.fill_between(fpr_grid, low, high, color="C0", alpha=0.2, lw=0, label=label)
    ax.plot(curve.fpr, curve.tpr, color="C0", lw=2, label=f"{model_name} (AUC {roc_auc(truth, prob):.3f})")
    colours = {}
    for i, (name, fpr, tpr) in enumerate(readers):
        colours[name] = f"C{i + 1}"
        ax.plot([fpr], [tpr], marker="o", ms=8, ls="none", color=colours[name], label=f"reader {name}")
    for name, fpr, tpr in matched or []:
        ax.plot([fpr], [tpr], marker="s", ms=8, ls="none", mfc="none", mew=2, color=colours.get(name, "C0"),
                label=f"{model_name} @ {name} threshold")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set(xlabel="1 - specificity (viable tumour called complete response)",
           ylabel="sensitivity (pCR called complete response)", xlim=(0, 1), ylim=(0, 1.01),
           title=title or f"pCR: {model_name} vs readers")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def calibration_plot(reliability, prob, truth, path, *, recalibration=None, title: str | None = None,
                     before: tuple | None = None, model_name: str = MODEL) -> Path:
    """Reliability diagram over a histogram of the predictions.

    Parameters
    ----------
    reliability : DataFrame — :func:`dlm_ml.stats.reliability_curve` output (``mean_predicted``,
        ``observed_fraction``, ``ci_low``, ``ci_high``, ``count``).
    prob, truth : arrays [n] — the model's P(pCR) and pcr (0/1), for the histogram.
    recalibration : (intercept, slope), optional — the logistic recalibration
        ``logit P(pCR) = a + b·logit(p)``, drawn as a curve (ideal: a = 0, b = 1).
    before : (reliability, recalibration or None), optional — the same of P(pCR) before post-hoc
        recalibration, drawn beside (open markers, dashed curve); the other arguments are then
        the recalibrated probabilities.
    model_name : str — the model's name in the default title.
    """
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="ideal")
    suffix = ", after recalibration" if before is not None else ""
    grid = np.linspace(0.005, 0.995, 199)
    if recalibration is not None and all(np.isfinite(recalibration)):
        a, b = recalibration
        ax.plot(grid, expit(a + b * logit(grid)), color="C1", lw=1.5,
                label=f"logistic {'fit' if suffix else 'recalibration'}{suffix} (slope {b:.2f})")
    rel = reliability
    err = np.vstack([rel.observed_fraction - rel.ci_low, rel.ci_high - rel.observed_fraction])
    ax.errorbar(rel.mean_predicted, rel.observed_fraction, yerr=err, fmt="o", color="C0", capsize=3,
                label=f"observed fraction of pCR{suffix} (95% CI)")
    if before is not None:
        rel_before, recal_before = before
        if recal_before is not None and all(np.isfinite(recal_before)):
            a, b = recal_before
            ax.plot(grid, expit(a + b * logit(grid)), color="C4", lw=1.2, ls="--",
                    label=f"logistic fit, before recalibration (slope {b:.2f})")
        err = np.vstack([rel_before.observed_fraction - rel_before.ci_low,
                         rel_before.ci_high - rel_before.observed_fraction])
        ax.errorbar(rel_before.mean_predicted, rel_before.observed_fraction, yerr=err, fmt="s", mfc="none",
                    color="C4", capsize=3, label="observed fraction of pCR, before recalibration (95% CI)")
    ax.set(ylabel="observed fraction pCR", xlim=(0, 1), ylim=(-0.02, 1.02),
           title=title or f"Calibration of P(pCR): {model_name}")
    ax.legend(loc="upper left", fontsize=8)
    prob, truth = np.asarray(prob), np.asarray(truth)
    bins = np.linspace(0, 1, 21)
    hist.hist([prob[truth == 0], prob[truth == 1]], bins=bins, stacked=True, color=["C3", "C2"],
              label=["viable tumour", "pCR"])
    hist.set(xlabel="predicted P(pCR)", ylabel="lesions")
    hist.set_ylim(0, hist.get_ylim()[1] * 1.4)  # room for the legend above the bars
    hist.legend(loc="upper right", fontsize=8, ncol=2)
    return save_figure(fig, path)


def decision_curve_plot(curve, path, *, references=("leave all", "resect all"), groups=None, title: str | None = None,
                        model_name: str = MODEL) -> Path:
    """Net benefit against threshold probability for each strategy.

    Parameters
    ----------
    curve : DataFrame — :func:`dlm_ml.stats.decision_curve` output (``strategy``, ``threshold``,
        ``net_benefit``).
    references : (treat all, treat none) strategy names, drawn in grey / black.
    groups : dict strategy -> (group, kind), optional
        Strategies of one group share a colour (e.g. a reader's calls and the model at that
        reader's threshold); kind "calls" is dotted with round markers, "threshold" dashed with
        square markers, "policy" (a fixed clinical rule, a reference) brown dash-dotted, anything
        else a solid line. Groups are coloured in order of appearance.
    model_name : str — the model's strategies are labelled with it (``model @ R1 threshold`` ->
        ``<model_name> @ R1 threshold``) and it names the default title.
    """
    fig, ax = plt.subplots(figsize=(8, 4.5))
    treat_all, treat_none = references
    styles = {treat_all: dict(color="grey", ls="--", lw=1.5), treat_none: dict(color="black", ls="-", lw=1)}
    groups = groups or {}
    colours: dict = {}
    kinds = {"calls": dict(ls=":", marker="o", ms=3, lw=1.5), "threshold": dict(ls="--", marker="s", ms=3, lw=1.2)}
    for name in curve.strategy.unique():
        if name in styles:
            continue
        group, kind = groups.get(name, (name, "curve"))
        if kind == "policy":
            styles[name] = dict(color="saddlebrown", ls="-.", lw=1.5)
            continue
        colours.setdefault(group, f"C{len(colours)}")
        styles[name] = dict(color=colours[group], **kinds.get(kind, dict(ls="-", lw=2)))
    for name, style in styles.items():
        part = curve[curve.strategy == name]
        if len(part):
            label = model_name + name[len(MODEL):] if name == MODEL or name.startswith(f"{MODEL} ") else name
            ax.plot(part.threshold, part.net_benefit, label=label, **style)
    # "Leave all" falls steeply at high thresholds; cut the axis so the useful range stays readable.
    useful = curve[curve.strategy != treat_all].net_benefit
    top = max(float(curve.net_benefit.max()), 0.01)
    bottom = min(float(useful.min()), 0.0) - 0.1 * top
    ax.set(xlabel="threshold probability pt of P(pCR) to leave a lesion in place",
           ylabel="net benefit (per lesion)", ylim=(bottom, 1.1 * top), xlim=(0, 1),
           title=title or f"Decision curve: leave a lesion in place when P(pCR) >= pt ({model_name})")
    ax.axhline(0, color="black", lw=0.5)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return save_figure(fig, path)


def _recalibration_line(cal: dict) -> tuple[float, float] | None:
    fit = cal["recalibration"]
    if fit.get("available") and fit["slope"] is not None and fit["slope_model_intercept"] is not None:
        return fit["slope_model_intercept"], fit["slope"]
    return None


def draw_figures(predictions: pd.DataFrame, sections: dict, out_dir: Path, *,
                 model_name: str = MODEL) -> dict[str, Path]:
    """ROC with band and operating points, calibration (before and after recalibration when the
    section holds both), decision curve (where defined), from the JSON-able report sections, the
    model named ``model_name``; returns figure name -> PNG path under ``out_dir``."""
    figures = {}
    if predictions.pcr.nunique() == 2:
        readers, matched = [], []
        for op in sections["operating_points"]:
            for target, key in ((readers, "reader_calls"), (matched, "model_matched")):
                m = op.get(key)
                if m and m.get("available", True) and m["sensitivity"]["n"] and m["specificity"]["n"]:
                    target.append((op["reader"], 1 - m["specificity"]["estimate"], m["sensitivity"]["estimate"]))
        band = sections["roc_band"]
        level = f"{100 * (1 - band.get('alpha', 0.05)):g}%"
        band_arg = ((band["fpr"], band["tpr_low"], band["tpr_high"], f"{level} pointwise band (patient bootstrap)")
                    if band.get("available") else None)
        figures["roc"] = roc_with_readers(predictions.pcr.to_numpy(), predictions.prob_pcr.to_numpy(), readers,
                                          out_dir / "roc.png", band=band_arg, matched=matched, model_name=model_name)
    cal = sections["calibration"]
    if len(predictions):
        uncalibrated = cal.get("uncalibrated")
        before = ((pd.DataFrame(uncalibrated["reliability"]), _recalibration_line(uncalibrated))
                  if uncalibrated and uncalibrated.get("available", True) else None)
        figures["calibration"] = calibration_plot(
            pd.DataFrame(cal["reliability"]), predictions.prob_pcr.to_numpy(), predictions.pcr.to_numpy(),
            out_dir / "calibration.png", recalibration=_recalibration_line(cal), before=before,
            model_name=model_name)
    dc = sections["decision_curve"]
    if dc.get("available"):
        figures["decision_curve"] = decision_curve_plot(pd.DataFrame(dc["curve"]), out_dir / "decision_curve.png",
                                                        references=(LEAVE_ALL, RESECT_ALL),
                                                        groups=dc["strategy_groups"], model_name=model_name)
    return figures
