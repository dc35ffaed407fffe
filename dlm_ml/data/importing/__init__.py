"""Turning folders of DICOM studies into a cohort (docs/design.md §3); the ``dlm-import`` command.

Modules: ``mapping`` (the mapping CSV), ``studies`` (locating each study's files, candidate
series), ``unit`` (one patient's visit: CT and ADC with sidecars), ``lesions`` (lesion,
outcome and reading tables), ``output`` (what is written, restarts), ``run`` (one import).
Usage and file formats: docs/importing.md.
"""

from dlm_ml.data.importing.mapping import ADC_SOURCES, ImportProblem, StudyRow, parse_mapping
from dlm_ml.data.importing.run import ImportRequest, ImportResult, import_cohort
from dlm_ml.data.importing.unit import Options, import_unit

__all__ = ["ADC_SOURCES", "ImportProblem", "ImportRequest", "ImportResult", "Options", "StudyRow", "import_cohort",
           "import_unit", "parse_mapping"]
