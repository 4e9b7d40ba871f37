"""Official Ego4D readers, feature stores, the time grid, datasets and the synthetic generator."""
