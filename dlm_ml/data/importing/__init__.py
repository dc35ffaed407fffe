"""Turning folders of DICOM studies into a cohort."""
