"""`python -m dlm_ml.evaluate` = `dlm-evaluate` (the command lives in :mod:`dlm_ml.cli.evaluate`)."""

from dlm_ml.cli.evaluate import main

if __name__ == "__main__":
    main()
