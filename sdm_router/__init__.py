"""sdm-router: an OpenAI-compatible gateway that verifies answers with a calibrated SDM model."""

__version__ = "0.1.0"
