"""Verifier: the SDM estimator, the micro-batcher, the encoder and the gateway's SDM verifier."""
