"""deid: DICOM de-identification of headers and burned-in pixel text."""

__version__ = "0.1.0"
