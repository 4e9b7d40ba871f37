"""Training loop, decoding, Soft-NMS and ensembling."""
