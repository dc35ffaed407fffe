"""The errors of DICOM reading; each message names the file or folder concerned."""

class DicomError(ValueError):
    """A DICOM input cannot be read as asked; the message names the file or folder."""


class AmbiguousDicomError(DicomError):
    """A folder holds more than one series or volume where one was expected."""
