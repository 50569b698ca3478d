"""In-process generation: sampling, incremental detokenization, the batched decoding worker."""
