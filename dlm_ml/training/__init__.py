"""Patient-grouped cross-validation of Lightning models: the fold loop and resuming it."""
