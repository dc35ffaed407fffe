"""Comparing predictions with the readers: predictions and thresholds, report sections, rendering, figures."""
