"""``python -m dlm_ml.data.synthetic OUT_DIR ...`` = ``dlm-synth OUT_DIR ...``."""

import sys

from dlm_ml.data.synthetic.writer import main

sys.exit(main())
