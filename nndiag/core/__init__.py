"""The machinery every probe shares: tensors in nested inputs, the model-call contract, batch
sources, the context, a training step, hooks, statistics and process state.

These modules import torch at the top; the probe modules (nndiag.probes) import them only inside
their measuring functions, so that `nndiag --help` and `nndiag explain` stay light.
"""
