"""The evaluation report as a :class:`~dlm_ml.evaluation.document.Document`: one function per
section of :func:`dlm_ml.evaluation.sections.compute_sections` (numbers already JSON-able)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from dlm_ml.evaluation.document import Document
from dlm_ml.evaluation.sections import MODEL
from dlm_ml.stats import describe_clustered_auc_ci
from dlm_ml.utils.formatting import fmt_ci, fmt_p, p_text
from dlm_ml.utils.formatting import fmt_number as fmt

#: The one statement of what a positive call means, shown once at the top of the report.
CONVENTION = ("Convention: a positive call — the model's (P(pCR) at or above its threshold) or a reader's "
              "(call = 1) — means 'complete response'. Sensitivity = P(called complete response | pCR); "
              "specificity = P(called not complete response | viable tumour); PPV = P(pCR | called complete "
              "response); NPV = P(viable tumour | called not complete response).")
EVENT_TEXT = {"all_pcr": "every lesion of the patient is pCR",
              "any_pcr": "at least one lesion of the patient is pCR"}


def named(label: str, model_name: str) -> str:
    """A section's label with the model called by its name: ``model (min)`` -> ``clinical_logistic (min)``,
    ``model @ R1 threshold`` -> ``clinical_logistic @ R1 threshold`` (the numbers keep ``model``)."""
    if label == MODEL or label.startswith(f"{MODEL} "):
        return model_name + label[len(MODEL):]
    return label


#: Above this, a t or F reference is a normal / chi-square one to every printed digit (e.g. the
#: Satterthwaite df of a model's AUC, which has no reader variance, is ~1e60).
EFFECTIVELY_INFINITE_DF = 1e6


def fmt_df(df, infinite: bool = False, digits: int = 1) -> str:
    """Degrees of freedom; infinite (a normal reference) spelt out (JSON holds it as null), and so
    is a df beyond :data:`EFFECTIVELY_INFINITE_DF` (the exact figure carries no information)."""
    if infinite:
        return "∞"
    if df is not None and float(df) > EFFECTIVELY_INFINITE_DF:
        return "> 10⁶ (≈ ∞)"
    return fmt(df, digits)


def _interval(result: dict, est: str = "auc", lo: str = "ci_low", hi: str = "ci_high") -> str:
    """An interval of an _attempt result, or 'n/a' (the reason goes to the notes)."""
    if not result.get("available", True):
        return "n/a"
    return fmt_ci(result[est], result[lo], result[hi])


def _reasons(section: Any, where: str, notes: list[str]):
    """Collect every 'not available' reason and every warning, with where it came from.

    The path names dict keys, and for list items their method or reader.
    """
    if isinstance(section, dict):
        if section.get("available") is False:
            notes.append(f"{where}: not available — {section['reason']}")
        for w in section.get("warnings", []):
            notes.append(f"{where}: {w}")
        for k, v in section.items():
            if k not in ("reason", "warnings"):
                _reasons(v, f"{where} / {k}", notes)
    elif isinstance(section, list):
        for v in section:
            label = v.get("method") or v.get("reader") if isinstance(v, dict) else None
            _reasons(v, f"{where} / {label}" if label else where, notes)


def _n(row: dict) -> str:
    return f"{row['n_lesions']} ({row['n_patients']})"


def _prop(p: dict) -> str:
    """A proportion with its numerator/denominator and interval."""
    if not p.get("n"):
        return "– (0/0)"
    return f"{fmt(p['estimate'])} ({p['successes']}/{p['n']}; {fmt(p['ci_low'])} to {fmt(p['ci_high'])})"


def clustered_interval_text(results: list[dict]) -> str:
    """Which interval the Obuchowski AUC columns show, e.g. ``logit-scale Wald, t quantile with
    patients - 1 df``; results written before the choice existed hold the Wald interval."""
    methods = dict.fromkeys(r.get("ci_method", "normal") for r in results if r.get("available"))
    return "; ".join(describe_clustered_auc_ci(m) for m in methods) or "none available"


def render_counts(doc: Document, counts: dict):
    doc.heading(2, "Lesions evaluated and left out")
    doc.para("Nothing is dropped silently: lesions without an outcome, without a prediction or without a "
             "reading are counted here. Each analysis states the lesions it used.")
    doc.table(["", "count"], [[k.replace("_", " "), fmt(v)] for k, v in counts.items()])


def render_discrimination(doc: Document, rows: list[dict], level: str, roc: str | None, model_name: str = MODEL):
    doc.heading(2, "1. Discrimination (lesion level)")
    doc.para(f"AUC of P(pCR) (model) and of the ordinal confidence score (readers), each on the lesions it "
             f"has. {level} intervals: DeLong treats lesions as independent; Obuchowski's clustered "
             "variance and the patient bootstrap treat the patient as the unit of independence. Design "
             "effect = (clustered SE / DeLong SE)². Obuchowski CI: "
             f"{clustered_interval_text([r['obuchowski'] for r in rows])}.")
    table = []
    for r in rows:
        ob = r["obuchowski"]
        deff = (ob["se"] / ob["se_unclustered"]) ** 2 if ob.get("available") and ob["se_unclustered"] else None
        auc = r["delong"]["auc"] if r["delong"].get("available") else None
        table.append([named(r["method"], model_name), _n(r), f"{r['n_pcr']} / {r['n_viable']}", fmt(auc),
                      _interval(r["delong"], "auc"), _interval(ob, "auc"), fmt(deff, 2),
                      _interval(r["bootstrap"], "estimate")])
    doc.table(["method", "lesions (patients)", "pCR / viable", "AUC", "DeLong CI", "Obuchowski CI",
               "design effect", "patient-bootstrap CI"], table)
    if roc:
        doc.image(roc, "ROC curve of the model with pointwise patient-bootstrap band and reader operating points")


def render_comparisons(doc: Document, rows: list[dict], level: str, model_name: str = MODEL):
    doc.heading(2, "2. Model vs each reader (paired, lesions both have)")
    doc.para("Difference = AUC(model) − AUC(reader) on the lesions that reader read. DeLong's paired test "
             "treats lesions as independent; Obuchowski's clustered test uses patients as clusters "
             f"(the primary figure when patients have several lesions). {level} CI of the difference.")
    table = []
    for r in rows:
        for name in ("delong", "obuchowski"):
            t = r[name]
            label = "DeLong" if name == "delong" else "Obuchowski (clustered)"
            if not t.get("available"):
                table.append([f"reader {r['reader']}", _n(r), "–", "–", "–", label, "n/a", "n/a", "n/a", "n/a"])
                continue
            table.append([f"reader {r['reader']}", _n(r), fmt(t["auc_a"]), fmt(t["auc_b"]), fmt(t["diff"]), label,
                          fmt(t["se"]), fmt(t["z"], 2), fmt_p(t["p_value"]), fmt_ci(t["diff"], t["ci_low"],
                                                                                     t["ci_high"])])
    doc.table(["reader", "lesions (patients)", f"AUC {model_name}", "AUC reader", "difference", "test", "SE", "z", "p",
               "difference (CI)"], table)


def render_mrmc(doc: Document, m: dict, level: str, model_name: str = MODEL):
    doc.heading(2, "3. Model vs the readers as a group (MRMC)")
    if not m.get("available"):
        extra = f" ({m['n_lesions_used']} lesions read by every reader)" if "n_lesions_used" in m else ""
        doc.para(f"MRMC analysis not shown: {m['reason']}{extra}.")
        return
    doc.para("Obuchowski–Rockette analysis with Hillis denominator degrees of freedom; the model enters as a "
             "'test' with the same rating for every reader, so the comparison is model vs the mean reader. "
             f"Covariances by {m['cov_method']} with patients as clusters ({m['n_clusters']} patients). "
             f"Lesions used: {m['n_lesions_used']} read by every reader; {m['n_lesions_not_read_by_all']} "
             "evaluated lesions were not read by every reader and are not in this analysis. Random readers "
             "(RRRC) generalise to new readers and new patients; fixed readers (FRRC) to new patients only.")
    table = []
    for key in ("rrrc", "frrc"):
        a = m[key]
        d = a["difference"]
        df = fmt(a["df1"], 0) + ("" if a["df2"] is None and not a["df2_infinite"] else
                                        f", {fmt_df(a['df2'], a['df2_infinite'], digits=0 if a.get('note') else 1)}")
        if a.get("note"):
            df += " (see note below)"
        table.append([a["description"], f"{a['statistic_name']} = {fmt(a['statistic'], 2)}", df,
                      fmt_p(a["p_value"]), fmt_ci(d["estimate"], d["ci_low"], d["ci_high"])])
    doc.table(["analysis", "statistic", "df", "p", f"AUC model − readers ({level} CI)"], table)
    doc.table(["test", f"mean AUC (RRRC {level} CI)", "SE", "df"],
              [[named(t["test"], model_name), fmt_ci(t["auc"], t["ci_low"], t["ci_high"]), fmt(t["se"]),
                fmt_df(t["df"], t["df_infinite"])]
               for t in m["rrrc"]["tests"]])
    for key in ("rrrc", "frrc"):
        if m[key].get("note"):
            doc.para(f"Note ({m[key]['description']}): {m[key]['note']}", note=True)


def render_operating_points(doc: Document, rows: list[dict], level: str, model_name: str = MODEL):
    doc.heading(2, "4. Operating points (binary calls)")
    doc.para("Positive = pCR = called complete response (a candidate to be left in place); see the convention "
             "above. The clinically critical figure is the last column: lesions called complete response that "
             "still hold viable tumour (1 − PPV), i.e. what would be left behind. Wilson "
             f"{level} intervals (lesions independent) and patient-bootstrap intervals (patients resampled) of "
             "each proportion. The model's calls use, in each fold, the threshold matched to the reader's "
             "specificity on that fold's training-side validation lesions.")
    header = ["strategy", "lesions (patients)", "sensitivity (Wilson)", "sensitivity (bootstrap CI)",
              "specificity (Wilson)", "specificity (bootstrap CI)", "PPV (Wilson)", "PPV (bootstrap CI)",
              "NPV (Wilson)", "NPV (bootstrap CI)", "viable tumour among called CR (1 − PPV)"]
    table, lines = [], []
    for r in rows:
        strategies = [(f"reader {r['reader']} calls", r.get("reader_calls"))]
        matched = r.get("model_matched")
        if matched and matched.get("available"):
            strategies.append((f"{model_name} @ {r['reader']} threshold", matched))
        for name, m in strategies:
            if m is None:
                continue
            cells = [c for k in ("sensitivity", "specificity", "ppv", "npv")
                     for c in (_prop(m[k]), _interval(m[f"{k}_bootstrap"], "estimate"))]
            table.append([name, _n(r), *cells, _prop(m["viable_among_called_cr"])])
        if matched and matched.get("available"):
            th = ", ".join(f"fold {t['fold']}: {'∞' if t['no_lesion_called_cr'] else fmt(t['threshold'])}"
                           for t in matched["thresholds"])
            mc = r["mcnemar"]
            mc_text = (f"exact McNemar model vs reader calls: lesions called CR by the model only {mc['n10']}, "
                       f"by the reader only {mc['n01']}, {p_text(mc['p_value'])}") if mc.get("available") else \
                "McNemar n/a"
            lines.append(f"reader {r['reader']}: thresholds on P(pCR) ({th}; ∞ = no lesion called complete "
                         f"response in that fold); {mc_text}.")
        elif matched:
            lines.append(f"reader {r['reader']}: model at the matched threshold not available — {matched['reason']}")
    doc.table(header, table)
    doc.bullets(lines)


def render_agreement(doc: Document, a: dict, level: str):
    doc.heading(2, "5. Agreement between readers")
    if not a.get("available"):
        doc.para(f"Not shown: {a['reason']}.")
        return
    doc.para(f"Fleiss' kappa over all readers on the {a['n_lesions_read_by_all']} lesions every reader read "
             f"(jackknife {level} CI; p tests kappa = 0); pairwise Cohen's kappa on the lesions both read: "
             "quadratic-weighted on the ordinal scores (categories "
             f"{', '.join(fmt(c) if not isinstance(c, float) else f'{c:g}' for c in a['score_categories'])}), "
             "unweighted on the calls. Lesions of one patient are treated as independent here.")
    rows = []
    for what in ("call", "score"):
        f = a[f"fleiss_{what}"]
        rows.append([f"{what}s (unordered categories)", _interval(f, "kappa"), fmt_p(f.get("p_value")),
                     fmt(f.get("n_subjects")), fmt(f.get("n_raters"))])
    doc.table(["Fleiss' kappa on", f"kappa ({level} CI)", "p", "lesions", "readers"], rows)
    doc.table(["readers", "lesions", f"weighted kappa, scores ({level} CI)", f"kappa, calls ({level} CI)"],
              [[f"{p['reader_a']} – {p['reader_b']}", fmt(p["n_lesions"]), _interval(p["score_quadratic"], "kappa"),
                _interval(p["call_unweighted"], "kappa")] for p in a["pairwise"]])


def render_calibration(doc: Document, c: dict, level: str, figure: str | None):
    doc.heading(2, "6. Calibration of the model")
    doc.para("Brier score (lower is better; 'prevalence only' = predicting the pCR rate for every lesion). "
             "Logistic recalibration logit P(pCR) = a + b·logit(p): calibration-in-the-large (ideal 0; > 0 "
             "means predictions too low on average) and slope (ideal 1; < 1 means predictions too extreme). "
             f"Wald {level} intervals; lesions treated as independent. Reliability points: quantile bins "
             "with Wilson intervals.")
    if "uncalibrated" in c:
        _calibration_before_after(doc, c, level, figure)
        return
    fit = c["recalibration"]
    if fit.get("available"):
        row = [fmt(c["brier"]), fmt(c["brier_prevalence_only"]), _coefficient(fit, "intercept"),
               _coefficient(fit, "slope"), "yes" if fit["converged"] else "no"]
    else:
        row = [fmt(c["brier"]), fmt(c["brier_prevalence_only"]), "n/a", "n/a", "–"]
    doc.table(["Brier", "Brier, prevalence only", "calibration intercept", "calibration slope", "fit converged"],
              [row])
    doc.table(["P(pCR) bin", "lesions", "mean predicted", f"observed pCR ({level} CI)"],
              [[f"{fmt(b['bin_low'], 2)}–{fmt(b['bin_high'], 2)}", fmt(b["count"]), fmt(b["mean_predicted"]),
                fmt_ci(b["observed_fraction"], b["ci_low"], b["ci_high"])] for b in c["reliability"]])
    if figure:
        doc.image(figure, "Reliability diagram and histogram of predictions")


def _calibration_row(c: dict) -> list[str]:
    fit = c["recalibration"]
    if fit.get("available"):
        return [fmt(c["brier"]), fmt(c["brier_prevalence_only"]), _coefficient(fit, "intercept"),
                _coefficient(fit, "slope"), "yes" if fit["converged"] else "no"]
    return [fmt(c["brier"]), fmt(c["brier_prevalence_only"]), "n/a", "n/a", "–"]


def _calibration_before_after(doc: Document, c: dict, level: str, figure: str | None):
    """The predictions carry P(pCR) before post-hoc recalibration too: both, side by side."""
    before = c["uncalibrated"]
    doc.para(f"P(pCR) before post-hoc recalibration ({before['column']}, fitted on each fold's validation "
             "lesions) and after (prob_pcr, the probability every other section uses).")
    rows = [["after recalibration (prob_pcr)", *_calibration_row(c)]]
    if before.get("available", True):
        rows.insert(0, [f"before recalibration ({before['column']})", *_calibration_row(before)])
    else:
        doc.para(f"Before recalibration not shown: {before['reason']}.")
    doc.table(["P(pCR)", "Brier", "Brier, prevalence only", "calibration intercept", "calibration slope",
               "fit converged"], rows)
    for name, part in (("before", before), ("after", c)):
        if part.get("reliability"):
            doc.table([f"P(pCR) bin, {name} recalibration", "lesions", "mean predicted", f"observed pCR ({level} CI)"],
                      [[f"{fmt(b['bin_low'], 2)}–{fmt(b['bin_high'], 2)}", fmt(b["count"]), fmt(b["mean_predicted"]),
                        fmt_ci(b["observed_fraction"], b["ci_low"], b["ci_high"])] for b in part["reliability"]])
    if figure:
        doc.image(figure, "Reliability diagram before and after recalibration and histogram of predictions")


def _coefficient(fit: dict, name: str) -> str:
    return fmt_ci(fit[name], fit[f"{name}_ci_low"], fit[f"{name}_ci_high"]) + f" SE {fmt(fit[f'{name}_se'])}"


def render_decision(doc: Document, d: dict, figure: str | None, model_name: str = MODEL):
    doc.heading(2, "7. Decision curves")
    doc.para("Decision: LEAVE a lesion in place when its P(pCR) ≥ pt, otherwise resect it. 'Treat' = leave, so "
             "'leave all' is treat-all and 'resect all' is treat-none (net benefit 0). Net benefit = "
             "TP/n − FP/n · pt/(1 − pt), TP = pCR lesions left in place (resections spared), FP = lesions with "
             "viable tumour left in place; pt/(1 − pt) is how many unnecessary resections one would accept to "
             "avoid leaving one viable lesion (pt = 0.8: four). In this framing net benefit equals the net "
             "number of resections avoided per lesion compared with 'resect all' (×100: per 100 lesions). "
             "Readers' calls are fixed strategies (leave what they call complete response). 'Net viable not "
             "left vs leave all' = (NB − NB_leave_all)·(1 − pt)/pt: lesions with viable tumour kept from "
             "being left in place, net of unnecessary resections, per lesion, compared with 'leave all'.")
    if not d.get("available"):
        doc.para(f"Not shown: {d['reason']}.")
        return
    doc.para(f"{d['n_lesions']} lesions (read by every reader; {d['n_lesions_not_read_by_all']} evaluated lesions "
             "left out of this comparison).", note=True)
    policy = d.get("policy") or {}
    if policy.get("available"):
        doc.para(f"'{policy['label']}' is the clinical default policy, a fixed strategy: leave in place every lesion "
                 f"no longer seen at presurgery ({policy['column']} = 0; {policy['n_disappeared']} of "
                 f"{policy['n_lesions']} lesions), resect every lesion still seen.")
    elif policy:
        doc.para(f"The clinical policy '{policy['label']}' is not drawn: {policy['reason']}.")
    curve = pd.DataFrame(d["curve"])
    nb = curve.pivot(index="threshold", columns="strategy", values="net_benefit")
    order = [s for s in dict.fromkeys(curve.strategy)]
    doc.table(["pt"] + [f"NB {named(s, model_name)}" for s in order] +
              [f"net viable not left vs leave all, {model_name}"],
              [[fmt(t, 2)] + [fmt(nb.loc[t, s]) for s in order] +
               [fmt(curve[(curve.strategy == MODEL) & (curve.threshold == t)].net_viable_not_left_vs_leave_all.iloc[0])]
               for t in nb.index])
    if figure:
        doc.image(figure, "Decision curve")


def render_patient_level(doc: Document, p: dict, level: str, model_name: str = MODEL):
    doc.heading(2, "8. Patient level")
    doc.para("One row per patient, over the patient's evaluated lesions. Events: 'all_pcr' = "
             f"{EVENT_TEXT['all_pcr']} (the patient could keep every lesion; the patient-level pCR), "
             f"'any_pcr' = {EVENT_TEXT['any_pcr']}. Model: min (least likely lesion) and product (independent "
             "lesions) estimate all_pcr; max and noisy-OR estimate any_pcr. Readers: lowest lesion score for "
             "all_pcr, highest for any_pcr, on patients whose every evaluated lesion they read. Patients are "
             f"independent, so DeLong and the ordinary bootstrap apply ({level} intervals).")
    doc.table(["method", "event", "patients", "events / non-events", "AUC (DeLong CI)", "bootstrap CI",
               "patients not fully read"],
              [[named(m["method"], model_name), m["event"], fmt(m["n_patients"]),
                f"{m['n_events']} / {m['n_non_events']}",
                _interval(m["delong"], "auc"), _interval(m["bootstrap"], "estimate"),
                fmt(m.get("n_patients_not_fully_read"))] for m in p["methods"]])
    if p["comparisons"]:
        rows = []
        for c in p["comparisons"]:
            t = c["delong"]
            rows.append([f"{model_name} (min) vs reader {c['reader']} (min score)", fmt(c["n_patients"])] +
                        ([fmt(t["auc_a"]), fmt(t["auc_b"]), fmt_ci(t["diff"], t["ci_low"], t["ci_high"]),
                          fmt_p(t["p_value"])] if t.get("available") else ["n/a"] * 4))
        doc.table(["all_pcr, paired DeLong", "patients", f"AUC {model_name}", "AUC reader",
                   f"difference ({level} CI)", "p"], rows)


def render_folds(doc: Document, f: dict, level: str):
    """The per-fold table: each test fold, then the pooled out-of-fold row, then the spread."""
    doc.heading(2, "9. Each test fold beside the pooled result")
    rows, pooled, spread = f["folds"], f.get("pooled"), f["spread"]
    interval = clustered_interval_text([r["obuchowski"] for r in rows + [pooled] if r and r.get("available")])
    if pooled is None:
        doc.para("One test fold (an external validation): its figures are the pooled result. AUC interval: "
                 f"Obuchowski (patients as clusters; {interval}), {level}.")
    else:
        doc.para("Each fold's lesions are predicted by the model trained without them. The pooled row ranks "
                 "lesions of all folds together, each predicted by its own fold's model: when the fold models "
                 "are scaled differently the pooled AUC can fall below every per-fold AUC, and pooled "
                 "calibration can hide folds that over- and under-predict. AUC intervals: Obuchowski "
                 f"(patients as clusters; {interval}), {level}; calibration intercept and slope as in section 6 "
                 f"(Wald {level}).")
    table = []
    for r in rows + ([pooled] if pooled is not None else []):
        name = f"pooled ({r['label']})" if r is pooled else r["label"]
        sizes = [_n(r), f"{r['n_pcr']} / {r['n_viable']}"]
        if not r.get("available"):
            table.append([name, *sizes, "n/a", fmt(r["brier"]), "n/a", "n/a"])
            continue
        ob, fit = r["obuchowski"], r["recalibration"]
        calibration = ([_coefficient(fit, "intercept"), _coefficient(fit, "slope")] if fit.get("available")
                       else ["n/a", "n/a"])
        table.append([name, *sizes, _interval(ob, "auc"), fmt(r["brier"]), *calibration])
    doc.table(["test fold", "lesions (patients)", "pCR / viable", f"AUC (Obuchowski {level} CI)", "Brier",
               "calibration intercept", "calibration slope"], table)
    lines = [f"{r['label']}: not available — {r['reason']}" for r in rows if not r.get("available")]
    if spread["n_folds"] > 1:
        if spread["n_folds_with_auc"]:
            text = (f"Per-fold AUC over {spread['n_folds_with_auc']} of {spread['n_folds']} folds: mean "
                    f"{fmt(spread['auc_mean'])}, range {fmt(spread['auc_min'])}–{fmt(spread['auc_max'])}")
            if spread["pooled_minus_mean"] is not None:
                text += f"; pooled AUC − mean per-fold AUC = {fmt(spread['pooled_minus_mean'])}"
            lines.insert(0, text + ".")
        else:
            lines.insert(0, "No fold has a defined AUC.")
    doc.bullets(lines)


def render(sections: dict, figures: dict, alpha: float, header: dict | None = None, *,
           model_name: str = MODEL) -> Document:
    """The whole report as a :class:`Document`: ``header`` (key -> value, in the caller's order)
    first, then the sections; ``figures`` maps figure name -> file name beside the report;
    ``model_name`` is what the document calls the model."""
    level = f"{100 * (1 - alpha):g}%"
    doc = Document()
    doc.heading(1, f"pCR evaluation report: {model_name} vs readers")
    if header:
        doc.table(["", ""], [[str(k), "–" if v is None else str(v)] for k, v in header.items()])
    doc.para("Unit of prediction: a lesion; unit of independence: a patient. Positive class: pathological "
             "complete response (pCR, no viable tumour); a call of 1 means 'read as complete response'. "
             "The model's predictions are out-of-fold.")
    doc.para(CONVENTION)
    render_counts(doc, sections["counts"])
    render_discrimination(doc, sections["discrimination"], level, figures.get("roc"), model_name)
    render_comparisons(doc, sections["comparisons"], level, model_name)
    render_mrmc(doc, sections["mrmc"], level, model_name)
    render_operating_points(doc, sections["operating_points"], level, model_name)
    render_agreement(doc, sections["agreement"], level)
    render_calibration(doc, sections["calibration"], level, figures.get("calibration"))
    render_decision(doc, sections["decision_curve"], figures.get("decision_curve"), model_name)
    render_patient_level(doc, sections["patient_level"], level, model_name)
    if "folds" in sections:
        render_folds(doc, sections["folds"], level)
    notes: list[str] = []
    for name, section in sections.items():
        _reasons(section, name, notes)
    doc.heading(2, "Notes: statistics not available, warnings")
    doc.bullets(notes or ["none"])
    return doc


