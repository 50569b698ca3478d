"""The autopilot: labelled traffic -> a candidate verifier -> the gate -> the registry
(docs/autopilot.md)."""
