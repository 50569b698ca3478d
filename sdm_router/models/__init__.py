"""Model loading shared by the backends, the verifier's encoder and the offline tools: finding
the packaged model, device and dtype, and the dequantized-weights cache."""
