"""A temporal convolutional network (Bai, Kolter & Koltun, 2018) read out at the window's last bar.

    features (B, L, F) -> (B, F, L) -> n_blocks x residual [dilated causal conv -> ReLU -> dropout] x 2,
    dilation 1, 2, 4, ... -> last bar's vector (B, C) -> classification / regression / confidence

Every convolution is padded on the left only, so the output at t sees inputs <= t. The receptive
field is 1 + 2 (kernel_size - 1) (2^n_blocks - 1) bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trading_engine.models.heads import ModelOutput, PredictionHeads


@dataclass(frozen=True)
class TCNConfig:
    n_features: int
    seq_len: int = 64
    channels: int = 64
    n_blocks: int = 4
    kernel_size: int = 3
    dropout: float = 0.1

    @property
    def receptive_field(self) -> int:
        return 1 + 2 * (self.kernel_size - 1) * (2**self.n_blocks - 1)


class CausalConv1d(nn.Conv1d):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__(c_in, c_out, kernel_size, dilation=dilation)
        self.left_padding = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, T) -> (B, C_out, T)
        return super().forward(F.pad(x, (self.left_padding, 0)))


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = CausalConv1d(c_in, c_out, kernel_size, dilation)
        self.conv2 = CausalConv1d(c_out, c_out, kernel_size, dilation)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, C_out, T)
        h = self.dropout(F.relu(self.conv1(x)))
        h = self.dropout(F.relu(self.conv2(h)))
        return F.relu(h + self.skip(x))


class TCN(nn.Module):
    def __init__(self, config: TCNConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.Sequential(*(
            ResidualBlock(config.n_features if i == 0 else config.channels, config.channels,
                          config.kernel_size, dilation=2**i, dropout=config.dropout)
            for i in range(config.n_blocks)
        ))
        self.heads = PredictionHeads(config.channels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, T, C): position t depends on x[:, :t + 1] only."""
        return self.blocks(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> ModelOutput:  # x: (B, L, F)
        return self.heads(self.encode(x)[:, -1])  # last bar: (B, C) -> heads
