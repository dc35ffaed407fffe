"""Small utilities below every other layer: atomic writes, hashing, parallel maps, formatting."""
