"""Architectures for calibration, built small with random init and learnable data, no download:
every timm family (timm_zoo), every transformers model type that can be configured small
generically (hf_zoo), and models in the style of public projects outside both registries
(projects). benchmarks/registry.py runs the default check on each."""
