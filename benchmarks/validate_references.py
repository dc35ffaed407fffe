"""Print each published reference figure beside the value dlm_ml computes.

Reads the reference datasets from ``../shared/refdata/stats`` beside the repository (or
``--refdata DIR``). The same figures are asserted by ``tests/stats``; this script shows them.

    .venv/bin/python benchmarks/validate_references.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from dlm_ml.stats import (
    decision_curve,
    delong_auc_ci,
    delong_covariance,
    delong_test,
    mcnemar_from_table,
    mrmc,
    proportion_ci,
    roc_auc,
)

DEFAULT = Path(__file__).resolve().parents[2] / "shared/refdata/stats"


def rows(refdata: Path):
    asah = pd.read_csv(refdata / "pROC_aSAH.csv")
    y = (asah.outcome == "Poor").astype(int).to_numpy()
    wfns, s100b = asah.wfns.to_numpy(float), asah.s100b.to_numpy(float)
    yield "pROC", "AUC wfns", "0.823678861788618", roc_auc(y, wfns)
    yield "pROC", "AUC s100b", "0.731368563685637", roc_auc(y, s100b)
    cov = delong_covariance(y, [s100b, wfns])
    yield "pROC", "DeLong var wfns", "0.00146991470882363", cov[1, 1]
    yield "pROC", "DeLong var s100b", "0.00266868245717244", cov[0, 0]
    yield "pROC", "DeLong cov(s100b, wfns)", "0.00119615567376754", cov[0, 1]
    t = delong_test(y, wfns, s100b)
    yield "pROC", "roc.test(wfns, s100b) Z", "2.20898359144091", t.z
    yield "pROC", "roc.test p", "0.0271757822291882", t.p_value
    yield "pROC", "95% CI of the difference", "(0.0104061769564846, 0.174214419249478)", (t.ci_low, t.ci_high)
    yield "pROC", "one-sided p (greater)", "0.0135878911145941", delong_test(y, wfns, s100b,
                                                                            alternative="greater").p_value
    ci = delong_auc_ci(y, s100b)
    yield "pROC", "DeLong 95% CI AUC(s100b)", "(0.630118211761623, 0.832618915609651)", (ci.ci_low, ci.ci_high)

    tables = pd.read_csv(refdata / "mcnemar_reference_tables.csv").set_index("table_id")
    r = tables.loc["R_Performance"]
    m = mcnemar_from_table(r.n11, r.n12, r.n21, r.n22)
    yield "McNemar", "R_Performance corrected chi2, p", "16.818, 4.115e-05", (m.statistic, m.p_value)
    r = tables.loc["SM_ctab0"]
    yield "McNemar", "SM_ctab0 corrected p", "0.606905427217951", mcnemar_from_table(r.n11, r.n12, r.n21,
                                                                                    r.n22).p_value
    yield "McNemar", "SM_ctab0 exact p", "0.60759136127308", mcnemar_from_table(r.n11, r.n12, r.n21, r.n22,
                                                                               exact=True).p_value
    m = mcnemar_from_table(r.n11, r.n12, r.n21, r.n22, correction=False)
    yield "McNemar", "SM_ctab0 uncorrected chi2, p", "0.470588235294118, 0.492716677227088", (m.statistic,
                                                                                             m.p_value)

    ci = proportion_ci(682, 925, method="clopper-pearson")
    yield "binomial", "682/925 Clopper-Pearson", "(0.7076683, 0.7654066)", (ci.ci_low, ci.ci_high)
    ci = proportion_ci(18, 20, method="clopper-pearson")
    yield "binomial", "18/20 Clopper-Pearson", "(0.6830172859809176, 0.9876514728297052)", (ci.ci_low, ci.ci_high)
    ci = proportion_ci(18, 20, method="wilson")
    yield "binomial", "18/20 Wilson", "(0.6989663547715128, 0.972133518786232)", (ci.ci_low, ci.ci_high)

    dca = pd.read_csv(refdata / "dcurves_df_binary.csv")
    curve = decision_curve(dca.cancer.to_numpy(), {"model": dca.cancerpredmarker.to_numpy()}, [0.25])
    nb = dict(zip(curve.strategy, curve.net_benefit))
    yield "dcurves", "NB model / treat all / treat none @ 0.25", "0.0640000 / -0.1466667 / 0", (
        nb["model"], nb["treat_all"], nb["treat_none"])

    vd = pd.read_csv(refdata / "MRMCaov_VanDyke.csv")
    res = mrmc(vd, test="treatment")
    rrrc, frrc, rrfc = res.rrrc, res.frrc, res.rrfc
    diff = rrrc.differences.iloc[0]
    yield "MRMC", "RRRC F, df2, p", "4.46, 15.26, 0.0517", (rrrc.statistic, rrrc.df2, rrrc.p_value)
    yield "MRMC", "RRRC difference SE, 95% CI", "0.02075, (-0.08796, 0.00036)", (diff.se, diff.ci_low,
                                                                                  diff.ci_high)
    yield "MRMC", "FRRC chi2, p", "5.47595, 0.0193", (frrc.statistic, frrc.p_value)
    yield "MRMC", "RRFC F, p", "8.70, 0.0420", (rrfc.statistic, rrfc.p_value)
    c = res.components
    yield "MRMC", "Cov1, Cov2, Cov3, Var(error)", "0.00034661, 0.00034407, 0.00023903, 0.00080229", (
        c.cov1, c.cov2, c.cov3, c.var_error)
    dl = mrmc(vd, test="treatment", cov_method="delong").rrrc
    yield "MRMC", "DeLong covariances: F, df2, p", "4.484854, 15.06611, 0.05123303", (dl.statistic, dl.df2,
                                                                                      dl.p_value)


def _fmt(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return f"{float(value):.10g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refdata", type=Path, default=DEFAULT)
    args = parser.parse_args()
    print("| source | figure | published | dlm_ml |\n|---|---|---|---|")
    for source, figure, published, ours in rows(args.refdata):
        print(f"| {source} | {figure} | {published} | {_fmt(ours)} |")


if __name__ == "__main__":
    main()
