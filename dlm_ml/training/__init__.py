"""Cross-validated training: the fold loop, seeding, and the interface its recorder implements."""
