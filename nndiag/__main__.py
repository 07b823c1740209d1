"""`python -m nndiag`: the command line (also under `torchrun -m nndiag`)."""

from nndiag.cli import run

run()
