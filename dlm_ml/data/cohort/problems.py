"""What validation finds in a cohort: one :class:`Problem` per finding, gathered in a
:class:`ValidationReport`.

A problem names the file, the line (header = line 1) and the ids involved, so a data manager
can fix all of them in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Problem:
    """One finding of validation.

    Attributes
    ----------
    file : str
        Table or image file the finding is about, relative to the cohort folder.
    line : int or None
        Line in ``file`` (header = 1), when the finding is about one row.
    ids : str
        The patient / lesion / reader ids concerned, e.g. ``"patient P0003, lesion L2"``.
    message : str
        What is wrong.
    """

    file: str
    line: int | None
    ids: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file} line {self.line}"
        who = f" ({self.ids})" if self.ids else ""
        return f"{where}{who}: {self.message}"


class CohortValidationError(ValueError):
    """Raised when a cohort has errors; ``problems`` holds all of them."""

    def __init__(self, root: Path, problems: list[Problem]):
        self.root = root
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cohort {root} has {len(problems)} error(s):\n{lines}")


@dataclass
class ValidationReport:
    """Errors, warnings and lesion exclusions found in a cohort."""

    root: Path
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    exclusions: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["patient_id", "lesion_id", "reason"])
    )

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_errors(self) -> None:
        if self.errors:
            raise CohortValidationError(self.root, self.errors)

    def summary(self) -> str:
        lines = [f"cohort {self.root}: {len(self.errors)} error(s), {len(self.warnings)} warning(s), "
                 f"{len(self.exclusions)} lesion(s) excluded"]
        lines += [f"  error: {p}" for p in self.errors]
        lines += [f"  warning: {p}" for p in self.warnings]
        for reason, n in self.exclusions.groupby("reason").size().items():
            lines.append(f"  excluded: {n} lesion(s): {reason}")
        return "\n".join(lines)

