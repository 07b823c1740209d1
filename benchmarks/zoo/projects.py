"""Models from outside the registries, where whole families live: packages that ship models
(x-transformers, vit-pytorch, perceiver-pytorch, diffusers, PyTorch Geometric), and models in the
style of well-known public repositories, written here in a few lines each (nanoGPT, makemore,
pytorch/examples' VAE, PointNet, pix2pix, DiT, rtdl's tabular MLP/ResNet/FT-Transformer, a
DeepONet, a GRU seq2seq with attention, a TCN, a switch mixture of experts, a minimal selective
state-space model). Each gets learnable data for its task and the loss its project trains with.

A package that is not installed is an exclusion with its reason (benchmarks/README.md lists the
pip line: the ones that depend on torchvision install with --no-deps).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nndiag.synthetic import markov_tokens, teacher, teacher_classification

from zoo.base import Arch, Batch, Excluded, logits_of, token_cross_entropy, use_stand_in_torchvision

VOCAB, LENGTH, WIDTH = 48, 16, 32


def _needs(package: str) -> Any:
    use_stand_in_torchvision()  # vit-pytorch imports torchvision's transforms at import time
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise Excluded(f"{package} is not installed ({exc})") from exc


def _lm_batch(batch_size: int = 16) -> Batch:
    stream = markov_tokens(batch_size, LENGTH + 1, VOCAB)
    return stream[:, :-1], stream[:, 1:]


def _images(classes: int = 5, side: int = 32, channels: int = 3) -> Callable[[int], Batch]:
    def make_batch(batch_size: int = 16) -> Batch:
        return teacher_classification(batch_size, (channels, side, side), classes)

    return make_batch


# ---- packages that ship models --------------------------------------------------------------


def x_transformers_lm() -> nn.Module:
    xt = _needs("x_transformers")
    return xt.TransformerWrapper(
        num_tokens=VOCAB, max_seq_len=LENGTH,
        attn_layers=xt.Decoder(dim=WIDTH, depth=2, heads=2, rotary_pos_emb=True, ff_glu=True),
    )  # fmt: skip


def vit_pytorch_vit() -> nn.Module:
    vit = _needs("vit_pytorch")
    return vit.ViT(
        image_size=32, patch_size=8, num_classes=5, dim=WIDTH, depth=2, heads=2, mlp_dim=64
    )


def vit_pytorch_simple() -> nn.Module:
    vit = _needs("vit_pytorch")
    return vit.SimpleViT(
        image_size=32, patch_size=8, num_classes=5, dim=WIDTH, depth=2, heads=2, mlp_dim=64
    )


def vit_pytorch_cait() -> nn.Module:
    cait = _needs("vit_pytorch.cait")
    return cait.CaiT(image_size=32, patch_size=8, num_classes=5, dim=WIDTH, depth=2, cls_depth=1,
                     heads=2, mlp_dim=64, layer_dropout=0.05)  # fmt: skip


def vit_pytorch_variant(name: str) -> nn.Module:
    """More of vit-pytorch's families at a small size: re-attention, two-branch cross attention,
    attention with convolutional stages, pooling stages, multi-axis windows, nested hierarchies,
    compact convolutional tokens, locally-grouped and global attention."""
    builders: dict[str, Callable[[], nn.Module]] = {
        "deepvit": lambda: _needs("vit_pytorch.deepvit").DeepViT(
            image_size=32, patch_size=8, num_classes=5, dim=WIDTH, depth=2, heads=2, mlp_dim=64
        ),
        "crossvit": lambda: _needs("vit_pytorch.cross_vit").CrossViT(
            image_size=32, num_classes=5, depth=1, sm_dim=WIDTH, sm_patch_size=8, sm_enc_depth=1,
            sm_enc_heads=2, sm_enc_mlp_dim=64, lg_dim=48, lg_patch_size=16, lg_enc_depth=1,
            lg_enc_heads=2, lg_enc_mlp_dim=64, cross_attn_depth=1, cross_attn_heads=2,
        ),
        "levit": lambda: _needs("vit_pytorch.levit").LeViT(
            image_size=32, num_classes=5, stages=2, dim=(32, 48), depth=1, heads=(2, 2), mlp_mult=2
        ),
        "cvt": lambda: _needs("vit_pytorch.cvt").CvT(
            num_classes=5, s1_emb_dim=16, s1_heads=1, s1_depth=1, s2_emb_dim=32, s2_heads=2,
            s2_depth=1, s3_emb_dim=48, s3_heads=2, s3_depth=1,
        ),
        "pit": lambda: _needs("vit_pytorch.pit").PiT(
            image_size=32, patch_size=8, dim=WIDTH, num_classes=5, depth=(1, 1), heads=2, mlp_dim=64
        ),
        "maxvit": lambda: _needs("vit_pytorch.max_vit").MaxViT(
            num_classes=5, dim_conv_stem=16, dim=16, dim_head=8, depth=(1, 1), window_size=4
        ),
        "nest": lambda: _needs("vit_pytorch.nest").NesT(
            image_size=32, patch_size=4, dim=32, heads=2, num_hierarchies=2, block_repeats=(1, 1),
            num_classes=5,
        ),
        "cct": lambda: _needs("vit_pytorch.cct").CCT(
            img_size=32, embedding_dim=WIDTH, n_conv_layers=2, kernel_size=3, stride=1, padding=1,
            pooling_kernel_size=3, pooling_stride=2, pooling_padding=1, num_layers=2, num_heads=2,
            mlp_ratio=2.0, num_classes=5,
        ),
    }  # fmt: skip
    return builders[name]()


def x_transformers_vit() -> nn.Module:
    xt = _needs("x_transformers")
    return xt.ViTransformerWrapper(
        image_size=32,
        patch_size=8,
        num_classes=5,
        attn_layers=xt.Encoder(dim=WIDTH, depth=2, heads=2),
    )


class XTransformerEncDec(nn.Module):
    """x-transformers' XTransformer: its encoder's embeddings are the decoder's cross-attention
    context; teacher-forced logits (its own forward returns the loss)."""

    def __init__(self) -> None:
        super().__init__()
        xt = _needs("x_transformers")
        self.model = xt.XTransformer(
            dim=WIDTH, enc_num_tokens=VOCAB, enc_depth=2, enc_heads=2, enc_max_seq_len=8,
            dec_num_tokens=VOCAB, dec_depth=2, dec_heads=2, dec_max_seq_len=8,
        )  # fmt: skip

    def forward(self, source: Tensor, previous: Tensor) -> Tensor:
        context = self.model.encoder(source, return_embeddings=True)
        return self.model.decoder.net(previous, context=context)


class PygModel(nn.Module):
    """PyTorch Geometric's ready-made models: GIN and EdgeCNN with a linear classifier on their
    hidden features, Graph U-Net (pooling and unpooling) with its own output layer. (GIN or
    EdgeCNN with out_channels=3 end in an MLP whose hidden layer is 3 ReLUs wide: two die and
    it cannot learn, in a plain loop too; nndiag calls it dead-units with overfit-failed.)"""

    def __init__(self, kind: str) -> None:
        super().__init__()
        models = _needs("torch_geometric.nn").models
        self.net = {
            "gin": lambda: models.GIN(8, 32, 2),
            "graphunet": lambda: models.GraphUNet(8, 32, 3, depth=2),
            "edgecnn": lambda: models.EdgeCNN(8, 32, 2),
        }[kind]()
        self.head = nn.Linear(32, 3) if kind != "graphunet" else nn.Identity()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.head(self.net(x, edge_index))


class DiffusersVAE(nn.Module):
    """diffusers' AutoencoderKL as its training scripts use it: a sampled latent, the
    reconstruction and the KL term."""

    def __init__(self) -> None:
        super().__init__()
        diffusers = _needs("diffusers")
        self.vae = diffusers.AutoencoderKL(
            in_channels=1, out_channels=1, block_out_channels=(16, 32),
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=2, norm_num_groups=8, sample_size=16,
        )  # fmt: skip

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        posterior = self.vae.encode(x).latent_dist
        return self.vae.decode(posterior.sample()).sample, posterior.kl()


def _vae_loss(outputs: Any, x: Tensor) -> Tensor:
    reconstruction, kl = outputs
    return F.mse_loss(reconstruction, x) + 1e-4 * kl.mean()


def _reconstruction(batch_size: int = 16) -> Batch:
    x = _blobs(batch_size)
    return x, x


def perceiver() -> nn.Module:
    perceiver_pytorch = _needs("perceiver_pytorch")
    return perceiver_pytorch.Perceiver(
        input_channels=3, input_axis=2, num_freq_bands=4, max_freq=10.0, depth=2, num_latents=16,
        latent_dim=WIDTH, latent_heads=2, latent_dim_head=16, cross_dim_head=16, num_classes=5,
        self_per_cross_attn=1,
    )  # fmt: skip


def _channels_last_images(batch_size: int = 16) -> Batch:
    x, y = teacher_classification(batch_size, (3, 16, 16), 5)
    return x.permute(0, 2, 3, 1).contiguous(), y


class DiffusersUNet(nn.Module):
    """diffusers' UNet2DModel predicting the noise of x_t = √ᾱ x_0 + √(1-ᾱ) ε at timestep t."""

    def __init__(self) -> None:
        super().__init__()
        diffusers = _needs("diffusers")
        self.unet = diffusers.UNet2DModel(
            sample_size=16, in_channels=1, out_channels=1, block_out_channels=(16, 32),
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=8,
        )  # fmt: skip

    def forward(self, noisy: Tensor, t: Tensor) -> Tensor:
        return self.unet(noisy, t).sample


def _blobs(batch_size: int, side: int, width: float) -> Tensor:
    """(batch, 1, side, side) images of one Gaussian blob each, at a random place."""
    centre = torch.rand(batch_size, 2, 1, 1) * side
    grid = torch.arange(side).float()
    rows = (grid[None, None, :, None] - centre[:, :1]) ** 2
    columns = (grid[None, None, None, :] - centre[:, 1:]) ** 2
    return torch.exp(-(rows + columns) / width)


def _blobs(batch_size: int, side: int = 16, channels: int = 1) -> Tensor:
    """Smooth blobs in [-1, 1] at random centres: images with a few degrees of freedom."""
    centre = torch.rand(batch_size, 2, 1, 1) * side
    grid = torch.arange(side).float()
    blob = torch.exp(
        -(
            (grid[None, None, :, None] - centre[:, :1]) ** 2
            + (grid[None, None, None, :] - centre[:, 1:]) ** 2
        )
        / 8.0
    )
    return (2 * blob - 1).expand(batch_size, channels, side, side)


def _denoising(side: int = 16, channels: int = 1) -> Callable[[int], Batch]:
    """DDPM's objective: predict the noise; x_0 are smooth blobs, so the task is learnable."""

    def make_batch(batch_size: int = 16) -> Batch:
        x0 = _blobs(batch_size, side, channels)
        t = torch.randint(0, 1000, (batch_size,))
        alpha = torch.cos(t.float() / 1000 * math.pi / 2)[:, None, None, None] ** 2
        noise = torch.randn_like(x0)
        return (alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise, t), noise

    return make_batch


class PygGCN(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        geometric = _needs("torch_geometric.nn")
        layer = {"gcn": geometric.GCNConv, "gat": geometric.GATConv, "sage": geometric.SAGEConv}[
            kind
        ]
        self.first, self.second = layer(8, 32), layer(32, 3)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.second(F.relu(self.first(x, edge_index)), edge_index)


def _graph(batch_size: int = 48) -> Batch:
    """One graph of communities with some feature-less nodes: labels follow the community."""
    g = torch.Generator().manual_seed(batch_size)
    community = torch.arange(batch_size) * 3 // batch_size
    x = F.one_hot(community, 8).float() + 0.1 * torch.randn(batch_size, 8, generator=g)
    x[torch.randperm(batch_size, generator=g)[: batch_size // 4]] = 0.0
    size = batch_size // 3
    src = torch.randint(0, batch_size, (4 * batch_size,), generator=g)
    dst = (community[src] * size + torch.randint(0, size, src.shape, generator=g)).clamp(
        max=batch_size - 1
    )
    edges = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])  # within communities
    return (x, edges), community


# ---- public repositories, in a few lines --------------------------------------------------------


class NanoGPT(nn.Module):
    """nanoGPT's GPT: pre-norm blocks, causal SDPA with dropout only in training, GELU MLP,
    weight tying, the residual projections initialised at 0.02/√(2·n_layer)."""

    def __init__(self, layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, WIDTH), nn.Embedding(LENGTH, WIDTH)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_GPTBlock(dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: Tensor) -> Tensor:
        h = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device)))
        for block in self.blocks:
            h = block(h)
        return self.lm_head(self.ln_f(h))


class _GPTBlock(nn.Module):
    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.c_attn, self.c_proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.mlp_fc, self.mlp_proj = nn.Linear(WIDTH, 4 * WIDTH), nn.Linear(4 * WIDTH, WIDTH)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = (
            z.view(b, t, 2, c // 2).transpose(1, 2)
            for z in self.c_attn(self.ln_1(x)).split(c, dim=2)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.mlp_fc(self.ln_2(x))))


class MakemoreMLP(nn.Module):
    """makemore part 3: embedding, Linear -> BatchNorm1d -> tanh layers, a softmax head whose
    last layer is scaled by 0.1 at init."""

    def __init__(self, context: int = 3) -> None:
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(VOCAB, 10)
        layers: list[nn.Module] = []
        width = context * 10
        for _ in range(3):
            layers += [nn.Linear(width, 64, bias=False), nn.BatchNorm1d(64), nn.Tanh()]
            width = 64
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(64, VOCAB)
        with torch.no_grad():
            self.head.weight.mul_(0.1)

    def forward(self, idx: Tensor) -> Tensor:
        return self.head(self.body(self.embed(idx).flatten(1)))


def _char_context(batch_size: int = 32) -> Batch:
    tokens = markov_tokens(batch_size, 4, VOCAB)
    return tokens[:, :3], tokens[:, 3]


class MakemoreWaveNet(nn.Module):
    """makemore part 5: pairs of characters fused hierarchically (FlattenConsecutive), with
    BatchNorm over (batch, time) and tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 12)
        self.fuse = nn.ModuleList(nn.Linear(2 * w, 48, bias=False) for w in (12, 48, 48))
        self.norms = nn.ModuleList(nn.BatchNorm1d(48) for _ in range(3))
        self.head = nn.Linear(48, VOCAB)

    def forward(self, idx: Tensor) -> Tensor:
        h = self.embed(idx)  # (B, 8, 12)
        for fuse, norm in zip(self.fuse, self.norms, strict=True):
            b, t, c = h.shape
            h = fuse(h.reshape(b, t // 2, 2 * c))
            h = torch.tanh(norm(h.transpose(1, 2)).transpose(1, 2))
        return self.head(h.squeeze(1))


def _char_context8(batch_size: int = 32) -> Batch:
    tokens = markov_tokens(batch_size, 9, VOCAB)
    return tokens[:, :8], tokens[:, 8]


class ExamplesVAE(nn.Module):
    """pytorch/examples' VAE: 784-400-20 encoder, decoder back to a sigmoid image, trained on
    BCE + KL (here on 8x8 images of blobs). As there, the latent is sampled in eval mode too."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(64, 64), nn.Linear(64, 8), nn.Linear(64, 8)
        self.fc3, self.fc4 = nn.Linear(8, 64), nn.Linear(64, 64)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = F.relu(self.fc1(x.flatten(1)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def _elbo(outputs: Any, x: Tensor) -> Tensor:
    recon, mu, logvar = outputs
    bce = F.binary_cross_entropy(recon, x.flatten(1), reduction="sum")
    return (bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())) / x.shape[0]


def _blob_images(batch_size: int = 16) -> Batch:
    centre = torch.rand(batch_size, 2, 1, 1) * 8
    grid = torch.arange(8).float()
    x = torch.exp(
        -(
            (grid[None, None, :, None] - centre[:, :1]) ** 2
            + (grid[None, None, None, :] - centre[:, 1:]) ** 2
        )
        / 3.0
    )
    return x.flatten(1), x.flatten(1)


class PointNet(nn.Module):
    """PointNet (Qi et al. 2017) without the T-nets: a shared per-point MLP (Conv1d k=1 with
    BatchNorm), a max over points, a classifier with dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.points = nn.Sequential(
            nn.Conv1d(3, 32, 1), nn.BatchNorm1d(32), nn.ReLU(),
            nn.Conv1d(32, 64, 1), nn.BatchNorm1d(64), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4)
        )

    def forward(self, cloud: Tensor) -> Tensor:  # (B, 3, N)
        return self.head(self.points(cloud).max(dim=2).values)


def _point_clouds(batch_size: int = 16) -> Batch:
    """Points on one of four shapes (sphere, cube surface, disc, line): permutation-invariant."""
    label = torch.randint(0, 4, (batch_size,))
    raw = torch.randn(batch_size, 3, 64)
    shapes = [
        raw / raw.norm(dim=1, keepdim=True),
        raw.clamp(-1, 1) / raw.abs().amax(dim=1, keepdim=True),
        raw * torch.tensor([1.0, 1.0, 0.0])[None, :, None],
        raw * torch.tensor([1.0, 0.0, 0.0])[None, :, None],
    ]
    cloud = torch.stack([shapes[int(k)][i] for i, k in enumerate(label)])
    return cloud, label


class Pix2PixGenerator(nn.Module):
    """pix2pix's U-Net generator, two levels: conv-BN-LeakyReLU down, transposed conv-BN-dropout-
    ReLU up with skip connections, tanh out; trained with L1 to the target image."""

    def __init__(self) -> None:
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(3, 16, 4, 2, 1), nn.LeakyReLU(0.2))
        self.down2 = nn.Sequential(
            nn.Conv2d(16, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.LeakyReLU(0.2)
        )
        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.BatchNorm2d(16), nn.Dropout(0.5), nn.ReLU()
        )
        self.up2 = nn.Sequential(nn.ConvTranspose2d(32, 3, 4, 2, 1), nn.Tanh())

    def forward(self, x: Tensor) -> Tensor:
        d1 = self.down1(x)
        return self.up2(torch.cat([self.up1(self.down2(d1)), d1], dim=1))


def _translation(batch_size: int = 16) -> Batch:
    """Map an image to a fixed smooth transform of it (a blur and channel mix), in [-1, 1]."""
    x = torch.tanh(torch.randn(batch_size, 3, 16, 16))
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    mix = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.2, 0.5]])
    return x, torch.tanh(2 * torch.einsum("kc,bchw->bkhw", mix, blurred))


def _l1(outputs: Any, targets: Tensor) -> Tensor:
    return F.l1_loss(logits_of(outputs), targets)


def _mse(outputs: Any, targets: Tensor) -> Tensor:
    return F.mse_loss(logits_of(outputs), targets)


class DiT(nn.Module):
    """DiT (Peebles & Xie 2023): patchify, timestep embedding, blocks with adaLN-Zero modulation
    (every modulation and the final layer zero-initialised), noise prediction."""

    def __init__(self, side: int = 16, patch: int = 4, depth: int = 2) -> None:
        super().__init__()
        self.patch, self.side = patch, side
        self.embed = nn.Conv2d(1, WIDTH, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, (side // patch) ** 2, WIDTH) * 0.02)
        self.time = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.SiLU(), nn.Linear(WIDTH, WIDTH))
        self.blocks = nn.ModuleList(_DiTBlock() for _ in range(depth))
        self.final_norm = nn.LayerNorm(WIDTH, elementwise_affine=False)
        self.final_mod = nn.Sequential(nn.SiLU(), nn.Linear(WIDTH, 2 * WIDTH))
        self.final = nn.Linear(WIDTH, patch * patch)
        for layer in (self.final_mod[1], self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, noisy: Tensor, t: Tensor) -> Tensor:
        h = self.embed(noisy).flatten(2).transpose(1, 2) + self.pos
        freqs = torch.exp(-math.log(10000) * torch.arange(WIDTH // 2) / (WIDTH // 2))
        c = self.time(
            torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=1)
        )
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_mod(c).chunk(2, dim=1)
        h = self.final(self.final_norm(h) * (1 + scale[:, None]) + shift[:, None])
        n, g = h.shape[0], self.side // self.patch
        return (
            h.reshape(n, g, g, self.patch, self.patch)
            .permute(0, 1, 3, 2, 4)
            .reshape(n, 1, self.side, self.side)
        )


class _DiTBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(WIDTH, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(WIDTH, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(WIDTH, 2, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(approximate="tanh"), nn.Linear(4 * WIDTH, WIDTH)
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(WIDTH, 6 * WIDTH))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        s1, g1, a1, s2, g2, a2 = (m[:, None] for m in self.modulation(c).chunk(6, dim=1))
        u = self.norm1(x) * (1 + g1) + s1
        x = x + a1 * self.attn(u, u, u, need_weights=False)[0]
        return x + a2 * self.mlp(self.norm2(x) * (1 + g2) + s2)


class TabularMLP(nn.Module):
    """rtdl's MLP baseline (Gorishniy et al. 2021): Linear-ReLU-Dropout blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(12, 64),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(64, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class TabularResNet(nn.Module):
    """rtdl's ResNet: BatchNorm-Linear-ReLU-Dropout-Linear residual blocks, a BN-ReLU head."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(12, 32)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm1d(32), nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 32)
            )
            for _ in range(2)
        )
        self.head = nn.Sequential(nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.first(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


class FTTransformer(nn.Module):
    """rtdl's FT-Transformer: a per-feature linear tokenizer, a [CLS] token, pre-norm transformer
    blocks, the prediction from [CLS]."""

    def __init__(self, features: int = 12) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(features, WIDTH) / math.sqrt(WIDTH))
        self.bias = nn.Parameter(torch.randn(features, WIDTH) / math.sqrt(WIDTH))
        self.cls = nn.Parameter(torch.randn(1, 1, WIDTH) / math.sqrt(WIDTH))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(WIDTH, 2, 64, dropout=0.1, batch_first=True, norm_first=True)
            for _ in range(2)
        )
        self.head = nn.Sequential(nn.LayerNorm(WIDTH), nn.ReLU(), nn.Linear(WIDTH, 1))

    def forward(self, x: Tensor) -> Tensor:
        tokens = x[:, :, None] * self.weight + self.bias
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.head(h[:, 0])


def _tabular_regression(batch_size: int = 32) -> Batch:
    x = torch.randn(batch_size, 12)
    with torch.no_grad():
        y = teacher(12, 1, task_seed=11)(x)
    return x, y + 0.1 * torch.randn_like(y)


class DeepONet(nn.Module):
    """DeepONet (Lu et al. 2021): a branch net on sensor values of the input function, a trunk
    net on the query coordinate (in [0, 1], so ReLU units are skewed at init), their dot product."""

    def __init__(self) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32))
        self.trunk = nn.Sequential(
            nn.Linear(1, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32)
        )

    def forward(self, sensors: Tensor, query: Tensor) -> Tensor:
        return (self.branch(sensors) * self.trunk(query)).sum(dim=1, keepdim=True)


def _antiderivative(batch_size: int = 32) -> Batch:
    """The antiderivative operator: u sampled at 16 sensors; G(u)(y) = ∫₀^y u."""
    coefficients = torch.randn(batch_size, 3)
    grid = torch.linspace(0, 1, 16)
    u = coefficients[:, :1] + coefficients[:, 1:2] * grid + coefficients[:, 2:] * grid**2
    y = torch.rand(batch_size, 1)
    integral = (
        coefficients[:, :1] * y + coefficients[:, 1:2] * y**2 / 2 + coefficients[:, 2:] * y**3 / 3
    )
    return (u, y), integral


class GRUSeq2Seq(nn.Module):
    """A GRU encoder-decoder with additive (Bahdanau) attention, teacher forcing: reverse the
    input sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.encoder = nn.GRU(WIDTH, WIDTH, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * WIDTH, WIDTH)
        self.decoder = nn.GRUCell(WIDTH + 2 * WIDTH, WIDTH)
        self.score = nn.Sequential(nn.Linear(3 * WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, 1))
        self.out = nn.Linear(WIDTH, VOCAB)

    def forward(self, source: Tensor, previous: Tensor) -> Tensor:
        memory, _ = self.encoder(self.embed(source))
        h = torch.tanh(self.bridge(memory.mean(dim=1)))
        logits = []
        for step in range(previous.shape[1]):
            query = h[:, None].expand(-1, memory.shape[1], -1)
            weights = self.score(torch.cat([memory, query], dim=2)).softmax(dim=1)
            context = (weights * memory).sum(dim=1)
            h = self.decoder(torch.cat([self.embed(previous[:, step]), context], dim=1), h)
            logits.append(self.out(h))
        return torch.stack(logits, dim=1)


def _reverse(batch_size: int = 16) -> Batch:
    source = torch.randint(1, VOCAB, (batch_size, 8))
    target = source.flip(1)
    previous = torch.cat([torch.zeros(batch_size, 1, dtype=torch.long), target[:, :-1]], dim=1)
    return (source, previous), target


class TCN(nn.Module):
    """A temporal convolutional network (Bai et al. 2018): dilated causal Conv1d residual blocks
    with weight norm and dropout, forecasting the next value of a series."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        channels = 1
        for dilation in (1, 2, 4):
            conv = nn.utils.parametrizations.weight_norm(
                nn.Conv1d(channels, 16, 3, dilation=dilation)
            )
            self.blocks.append(nn.ModuleDict({"conv": conv, "skip": nn.Conv1d(channels, 16, 1)}))
            channels = 16
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Conv1d(16, 1, 1)

    def forward(self, series: Tensor) -> Tensor:  # (B, 1, T)
        h = series
        for block, dilation in zip(self.blocks, (1, 2, 4), strict=True):
            y = block["conv"](F.pad(h, (2 * dilation, 0)))
            h = self.dropout(F.relu(y)) + block["skip"](h)
        return self.head(h)


def _series(batch_size: int = 16) -> Batch:
    t = torch.arange(33).float()
    phase = torch.rand(batch_size, 1) * 6.28
    freq = 0.2 + 0.3 * torch.rand(batch_size, 1)
    series = torch.sin(freq * t + phase)[:, None]
    return series[..., :-1], series[..., 1:]


class SwitchMoE(nn.Module):
    """A transformer layer whose MLP is a switch mixture of experts (Fedus et al. 2022): top-1
    routing, each token to one expert, scaled by its router probability."""

    def __init__(self, experts: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, 2, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.router = nn.Linear(WIDTH, experts)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(WIDTH, 64), nn.GELU(), nn.Linear(64, WIDTH))
            for _ in range(experts)
        )
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, idx: Tensor) -> Tensor:
        h = self.embed(idx)
        mask = torch.triu(torch.ones(idx.shape[1], idx.shape[1], dtype=torch.bool), 1)
        u = self.norm1(h)
        h = h + self.attn(u, u, u, attn_mask=mask, need_weights=False)[0]
        u = self.norm2(h)
        probs = self.router(u).softmax(dim=-1)
        weight, choice = probs.max(dim=-1)
        mixed = torch.zeros_like(u)
        for e, expert in enumerate(self.experts):
            picked = choice == e
            if picked.any():
                mixed[picked] = expert(u[picked]) * weight[picked][:, None]
        return self.head(h + mixed)


class SelectiveSSM(nn.Module):
    """A minimal selective state-space layer in the style of Mamba (Gu & Dao 2023): input-dependent
    Δ, B, C, a diagonal A = -exp(A_log), a sequential scan, a gated output, a causal depthwise conv."""

    def __init__(self, state: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.norm = nn.LayerNorm(WIDTH)
        self.in_proj = nn.Linear(WIDTH, 2 * WIDTH)
        self.conv = nn.Conv1d(WIDTH, WIDTH, 4, groups=WIDTH, padding=3)
        self.x_proj = nn.Linear(WIDTH, 1 + 2 * state)
        self.dt_proj = nn.Linear(1, WIDTH)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state + 1).float()).repeat(WIDTH, 1))
        self.D = nn.Parameter(torch.ones(WIDTH))
        self.out_proj = nn.Linear(WIDTH, WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)
        self.state = state

    def forward(self, idx: Tensor) -> Tensor:
        h = self.embed(idx)
        x, gate = self.in_proj(self.norm(h)).chunk(2, dim=-1)
        x = F.silu(self.conv(x.transpose(1, 2))[..., : idx.shape[1]].transpose(1, 2))
        dt, b, c = self.x_proj(x).split([1, self.state, self.state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # (B, T, W)
        a = -torch.exp(self.A_log)  # (W, S)
        s = torch.zeros(x.shape[0], WIDTH, self.state)
        outputs = []
        for t in range(idx.shape[1]):
            s = (
                torch.exp(delta[:, t, :, None] * a) * s
                + delta[:, t, :, None] * b[:, t, None] * x[:, t, :, None]
            )
            outputs.append((s * c[:, t, None]).sum(-1) + self.D * x[:, t])
        y = torch.stack(outputs, dim=1) * F.silu(gate)
        return self.head(h + self.out_proj(y))


def archs() -> list[Arch]:
    return [
        Arch("project/x-transformers-lm", "x-transformers", "text", x_transformers_lm, _lm_batch, token_cross_entropy),
        Arch("project/vit-pytorch-vit", "vit-pytorch", "vision", vit_pytorch_vit, _images()),
        Arch("project/vit-pytorch-simplevit", "vit-pytorch", "vision", vit_pytorch_simple, _images()),
        Arch("project/vit-pytorch-cait", "vit-pytorch", "vision", vit_pytorch_cait, _images()),
        Arch("project/perceiver", "perceiver-pytorch", "vision", perceiver, _channels_last_images),
        *(
            Arch(f"project/vit-pytorch-{name}", "vit-pytorch", "vision",
                 lambda name=name: vit_pytorch_variant(name), _images())
            for name in ("deepvit", "crossvit", "levit", "cvt", "pit", "maxvit", "nest", "cct")
        ),
        Arch("project/x-transformers-vit", "x-transformers", "vision", x_transformers_vit, _images()),
        Arch("project/x-transformers-encdec", "x-transformers", "seq2seq", XTransformerEncDec, _reverse,
             token_cross_entropy),
        Arch("project/pyg-gin", "torch-geometric", "graph", lambda: PygModel("gin"), _graph, batch_size=48),
        Arch("project/pyg-graphunet", "torch-geometric", "graph", lambda: PygModel("graphunet"), _graph,
             batch_size=48),
        Arch("project/pyg-edgecnn", "torch-geometric", "graph", lambda: PygModel("edgecnn"), _graph,
             batch_size=48),
        Arch("project/diffusers-vae", "diffusers", "generative", DiffusersVAE, _reconstruction, _vae_loss),
        Arch("project/diffusers-unet2d", "diffusers", "generative", DiffusersUNet, _denoising(), _mse),
        Arch("project/pyg-gcn", "torch-geometric", "graph", lambda: PygGCN("gcn"), _graph, batch_size=48),
        Arch("project/pyg-gat", "torch-geometric", "graph", lambda: PygGCN("gat"), _graph, batch_size=48),
        Arch("project/pyg-graphsage", "torch-geometric", "graph", lambda: PygGCN("sage"), _graph, batch_size=48),
        Arch("project/nanogpt", "nanoGPT", "text", NanoGPT, _lm_batch, token_cross_entropy),
        Arch("project/makemore-mlp", "makemore", "text", MakemoreMLP, _char_context, batch_size=32),
        Arch("project/makemore-wavenet", "makemore", "text", MakemoreWaveNet, _char_context8, batch_size=32),
        Arch("project/vae-examples", "pytorch/examples", "generative", ExamplesVAE, _blob_images, _elbo),
        Arch("project/pointnet", "PointNet", "vision", PointNet, _point_clouds),
        Arch("project/pix2pix-unet", "pix2pix", "dense", Pix2PixGenerator, _translation, _l1),
        Arch("project/dit", "DiT", "generative", DiT, _denoising(), _mse),
        Arch("project/rtdl-mlp", "rtdl", "tabular", TabularMLP, _tabular_regression, _mse, batch_size=32),
        Arch("project/rtdl-resnet", "rtdl", "tabular", TabularResNet, _tabular_regression, _mse, batch_size=32),
        Arch("project/rtdl-ft-transformer", "rtdl", "tabular", FTTransformer, _tabular_regression, _mse, batch_size=32),
        Arch("project/deeponet", "DeepONet", "tabular", DeepONet, _antiderivative, _mse, batch_size=32),
        Arch("project/gru-seq2seq", "seq2seq", "seq2seq", GRUSeq2Seq, _reverse, token_cross_entropy),
        Arch("project/tcn", "TCN", "tabular", TCN, _series, _mse),
        Arch("project/switch-moe", "switch", "moe", SwitchMoE, _lm_batch, token_cross_entropy),
        Arch("project/selective-ssm", "mamba-style", "state-space", SelectiveSSM, _lm_batch, token_cross_entropy),
    ]  # fmt: skip
