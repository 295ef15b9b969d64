"""A pre-norm Transformer encoder over a window of bars, read out at the window's last bar.

    features (B, L, F) -> input projection -> + sinusoidal positions -> N x [causal self-attention,
    feed-forward] -> layer norm -> last bar's vector (B, d) -> classification / regression / confidence

The attention is causal, so the vector at position t sees bars <= t only; the readout takes the last
position, i.e. the bar whose close the prediction uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trading_engine.models.heads import ModelOutput, PredictionHeads


@dataclass(frozen=True)
class TransformerConfig:
    n_features: int
    seq_len: int = 64
    d_model: int = 128
    n_heads: int = 8
    n_layers: int = 4
    d_ff: int = 512
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")


class SinusoidalPositions(nn.Module):
    """The fixed encoding of "Attention Is All You Need", one row per position of the window."""

    def __init__(self, seq_len: int, d_model: int) -> None:
        super().__init__()
        position = torch.arange(seq_len, dtype=torch.float32).unsqueeze(1)  # (L, 1)
        frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10_000.0) / d_model))
        table = torch.zeros(seq_len, d_model)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
        self.register_buffer("table", table, persistent=False)  # (L, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, d), T <= L
        return x + self.table[: x.shape[1]]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        # Dropout on the output, not on the (B, H, T, T) attention weights: on a CPU, drawing that
        # mask costs as much as the rest of the step.
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d/H)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, d)  # (B, T, d)
        return self.dropout(self.out(y))


class FeedForward(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(config.d_model)
        self.attention = CausalSelfAttention(config)
        self.norm_ff = nn.LayerNorm(config.d_model)
        self.ff = FeedForward(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm_attention(x))
        return x + self.ff(self.norm_ff(x))


class Transformer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.input_projection = nn.Linear(config.n_features, config.d_model)
        self.positions = SinusoidalPositions(config.seq_len, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.heads = PredictionHeads(config.d_model)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, T, d): position t depends on x[:, :t + 1] only."""
        h = self.dropout(self.positions(self.input_projection(x)))  # (B, T, d)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def forward(self, x: torch.Tensor) -> ModelOutput:  # x: (B, L, F)
        return self.heads(self.encode(x)[:, -1])  # last bar: (B, d) -> heads
