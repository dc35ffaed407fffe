"""The statistics CLI tests read the reference datasets the statistics tests use."""

from tests.stats.conftest import asah, refdata_stats  # noqa: F401
