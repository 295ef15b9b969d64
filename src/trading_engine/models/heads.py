"""The three heads every model ends with, and the loss that trains them together.

A model turns a window of features into one representation per window, h (B, d). The heads read h:
- classification: logits over (down, flat, up), the direction of the return at the horizon;
- regression: the return at the horizon, in units of the training rows' return scale;
- confidence: a logit of the probability that the direction the rule would trade is right. The
  rule trades the sign of the regression head's forecast (trading_engine.trading.rule), so the
  head is trained, with a binary cross-entropy, against "sign(pred_return) == sign(realised
  return)" on the rows whose realised return is not 0: sigmoid(confidence_logit) estimates how
  far to trust the traded direction (the rule's confidence threshold reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

CLASS_NAMES = ("down", "flat", "up")  # class index 0, 1, 2 <-> target_dir -1, 0, +1
IGNORE_CLASS = -100  # label of rows without a target (cross-entropy skips them)


class ModelOutput(NamedTuple):
    logits: torch.Tensor  # (B, 3) over CLASS_NAMES
    pred_return: torch.Tensor  # (B,) return at the horizon / the return scale
    confidence_logit: torch.Tensor  # (B,) logit of P(sign(pred_return) is the realised direction)


class PredictionHeads(nn.Module):
    def __init__(self, d_in: int) -> None:
        super().__init__()
        self.classification = nn.Linear(d_in, len(CLASS_NAMES))
        self.regression = nn.Linear(d_in, 1)
        self.confidence = nn.Linear(d_in, 1)

    def forward(self, h: torch.Tensor) -> ModelOutput:  # h: (B, d_in)
        return ModelOutput(
            logits=self.classification(h),  # (B, 3)
            pred_return=self.regression(h).squeeze(-1),  # (B,)
            confidence_logit=self.confidence(h).squeeze(-1),  # (B,)
        )


@dataclass(frozen=True)
class LossWeights:
    classification: float = 1.0
    regression: float = 0.5
    confidence: float = 0.2


class LossParts(NamedTuple):
    total: torch.Tensor
    classification: torch.Tensor
    regression: torch.Tensor
    confidence: torch.Tensor


def multitask_loss(
    output: ModelOutput,
    target_class: torch.Tensor,  # (B,) int64 in {0, 1, 2}, IGNORE_CLASS where unknown
    target_return: torch.Tensor,  # (B,) float, already divided by the return scale
    weights: LossWeights,
    huber_delta: float = 1.0,
) -> LossParts:
    """Cross-entropy + Huber (robust to the fat tails of returns) + confidence cross-entropy."""
    logits = output.logits.float()
    known = target_class != IGNORE_CLASS
    classification = F.cross_entropy(logits, target_class, ignore_index=IGNORE_CLASS)
    regression = F.huber_loss(output.pred_return.float()[known], target_return[known], delta=huber_delta)
    # The confidence head learns whether the traded direction, the sign of the regression head's
    # forecast, is right; no gradient flows into the regression head through it.
    has_direction = known & (target_return != 0)
    is_right = (torch.sign(output.pred_return.detach().float()) == torch.sign(target_return)).float()
    per_row = F.binary_cross_entropy_with_logits(output.confidence_logit.float(), is_right, reduction="none")
    confidence = (per_row * has_direction).sum() / has_direction.sum().clamp(min=1)
    total = (weights.classification * classification + weights.regression * regression
             + weights.confidence * confidence)
    return LossParts(total, classification, regression, confidence)
