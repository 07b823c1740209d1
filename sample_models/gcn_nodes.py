"""Healthy: a two-layer graph convolutional network (Kipf & Welling 2017) classifying the nodes
of one graph. The batch is a graph: node features (N, F), an edge list (2, E), a label per node.
Nodes with identical features and neighbourhoods cannot be told apart, so one graph cannot be
memorised to 100%: the loss has a floor far below what zeroed inputs reach. Examples (nodes)
mix through the edges by design."""

import torch
from torch import nn

NODES, FEATURES, CLASSES = 32, 8, 3


class GCNLayer(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        loops = torch.arange(n, device=x.device)
        src = torch.cat([edges[0], loops])
        dst = torch.cat([edges[1], loops])
        degree = torch.zeros(n, device=x.device).index_add_(
            0, dst, torch.ones_like(dst, dtype=x.dtype)
        )
        norm = (degree[src] * degree[dst]).rsqrt()
        h = self.linear(x)
        return torch.zeros_like(h).index_add_(0, dst, h[src] * norm[:, None])


class GCN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = GCNLayer(FEATURES, 32), GCNLayer(32, CLASSES)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x, edge_index)), edge_index)


def build_model() -> nn.Module:
    return GCN()


def make_batch(batch_size: int = NODES):
    """A ring of communities: features one-hot of a community, with some feature-less nodes;
    labels follow the community (learnable), so nodes with equal features and neighbours share
    a label except where the ring mixes communities."""
    g = torch.Generator().manual_seed(batch_size)
    n = batch_size
    community = torch.arange(n) * CLASSES // n
    x = nn.functional.one_hot(community, FEATURES).float()
    x[torch.randperm(n, generator=g)[: n // 4]] = 0.0  # a quarter of the nodes carry no feature
    ring = torch.arange(n)
    extra = torch.randint(0, n, (n,), generator=g)
    edges = torch.cat([torch.stack([ring, (ring + 1) % n]), torch.stack([ring, extra])], dim=1)
    edges = torch.cat([edges, edges.flip(0)], dim=1)
    return (x, edges), community
