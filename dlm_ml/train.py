"""`python -m dlm_ml.train` = `dlm-train` (the command lives in :mod:`dlm_ml.cli.train`)."""

from dlm_ml.cli.train import main

if __name__ == "__main__":
    main()
