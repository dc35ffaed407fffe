"""dlm_ml: pCR prediction for disappearing colorectal liver metastases."""
__version__ = "0.1.0"
