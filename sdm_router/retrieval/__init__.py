"""Retrieval: context passages for RETRIEVE-and-regenerate."""
