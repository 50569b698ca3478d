"""Verifier: the SDM estimator, its batching scorer, and (later) the encoder."""
