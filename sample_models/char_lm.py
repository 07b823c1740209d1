"""Healthy: Bengio-style character-level MLP language model (makemore part 2).

Vocabulary 80, embedding 32, context of 8 characters, two hidden ReLU layers of 128:
80*32 + (256*128 + 128) + (128*128 + 128) + (128*80 + 80) = 62,288 parameters.
"""

from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, EMBED, CONTEXT, HIDDEN = 80, 32, 8, 128


class CharMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.hidden = nn.Sequential(
            nn.Linear(CONTEXT * EMBED, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.ReLU(),
        )
        self.head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, idx):  # idx: (B, CONTEXT) int64
        x = self.embed(idx).flatten(1)  # (B, CONTEXT * EMBED)
        return self.head(self.hidden(x))  # (B, VOCAB) logits


def build_model() -> nn.Module:
    return CharMLP()


def make_batch(batch_size: int):
    """Predict the next character of a Markov-chain stream from the previous CONTEXT ones."""
    tokens = markov_tokens(batch_size, CONTEXT + 1, VOCAB)
    return tokens[:, :CONTEXT], tokens[:, CONTEXT]
