"""Operator endpoints: health and readiness, decisions and feedback, admin reload."""
