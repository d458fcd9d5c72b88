"""Data: annotation readers, media decoding, clip sampling, transforms and the synthetic motion dataset."""
