"""``sdm-router verifier ablate``: compare verifier representations on a validation split.

``probe``: one forward pass per answer, pooled many ways and cached; ``variants``: which pooled
blocks and attributes make one representation; ``runner``: the validation split, SDM training
per variant and seed, the gateway metrics and the baselines; ``report``: the table.
See docs/verifier-ablation.md.
"""
