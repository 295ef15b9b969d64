"""Both models: the same batch in, the same three heads out, gradients everywhere, and causality."""

from __future__ import annotations

import pytest
import torch

from trading_engine.models import (
    IGNORE_CLASS,
    LossWeights,
    ModelOutput,
    build_model,
    multitask_loss,
)

SMALL = {
    "transformer": {"d_model": 16, "n_heads": 4, "n_layers": 2, "d_ff": 32, "dropout": 0.0},
    "tcn": {"channels": 16, "n_blocks": 3, "kernel_size": 3, "dropout": 0.0},
}
BATCH, SEQ_LEN, N_FEATURES = 5, 12, 7


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_maps_a_batch_to_three_heads_and_every_weight_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build_model(name, N_FEATURES, SEQ_LEN, SMALL[name])
    output = model(torch.randn(BATCH, SEQ_LEN, N_FEATURES))
    assert output.logits.shape == (BATCH, 3)
    assert output.pred_return.shape == (BATCH,)
    assert output.confidence_logit.shape == (BATCH,)
    target_class = torch.tensor([0, 1, 2, IGNORE_CLASS, 2])
    target_return = torch.tensor([-1.0, 0.1, 2.0, float("nan"), 0.5])
    loss = multitask_loss(output, target_class, target_return, LossWeights())
    assert torch.isfinite(loss.total)
    loss.total.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, f"{parameter_name} gets no gradient"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_output_at_position_t_ignores_every_input_after_t(name):
    torch.manual_seed(1)
    model = build_model(name, N_FEATURES, SEQ_LEN, SMALL[name]).eval()
    x = torch.randn(BATCH, SEQ_LEN, N_FEATURES)
    t = 6
    changed = x.clone()
    changed[:, t + 1:] = 100.0 * torch.randn(BATCH, SEQ_LEN - t - 1, N_FEATURES)
    with torch.no_grad():
        before, after = model.encode(x), model.encode(changed)
        window_ending_at_t = model(x[:, : t + 1])
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(before[:, t + 1:], after[:, t + 1:])  # the change is visible later on
    # The last-bar readout of the window that ends at t is the representation at position t.
    torch.testing.assert_close(window_ending_at_t.logits, model.heads(before[:, t]).logits)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_reads_the_whole_window(name):
    """The readout depends on the window's first bar (the TCN's receptive field covers the window)."""
    torch.manual_seed(2)
    model = build_model(name, N_FEATURES, SEQ_LEN, SMALL[name]).eval()
    x = torch.randn(BATCH, SEQ_LEN, N_FEATURES)
    changed = x.clone()
    changed[:, 0] += 10.0
    with torch.no_grad():
        assert not torch.allclose(model(x).logits, model(changed).logits)


def test_positional_encoding_is_sized_by_the_sequence_length():
    model = build_model("transformer", N_FEATURES, SEQ_LEN, SMALL["transformer"])
    assert model.positions.table.shape == (SEQ_LEN, SMALL["transformer"]["d_model"])


def test_unknown_model_or_hyper_parameter_is_an_error():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("lstm", N_FEATURES, SEQ_LEN)
    with pytest.raises(ValueError, match="hyper-parameters"):
        build_model("tcn", N_FEATURES, SEQ_LEN, {"d_model": 8})


def test_confidence_head_learns_whether_the_traded_direction_is_right():
    """The rule trades sign(pred_return); the confidence loss must target exactly that event,
    whatever the class head says (here it says "flat", and the old target was "the class is right")."""
    logits = torch.tensor([[0.0, 5.0, 0.0]] * 4)  # the class head is sure of "flat" on every row
    pred_return = torch.tensor([0.3, -0.2, 0.4, 0.1])  # traded directions: long, short, long, long
    target_return = torch.tensor([0.5, 0.1, -0.2, 0.0])  # right, wrong, wrong, no direction
    target_class = torch.tensor([1, 1, 1, 1])  # the class call is right on every row
    confidence_logit = torch.tensor([2.0, -1.0, 0.5, 3.0])
    output = ModelOutput(logits, pred_return, confidence_logit)
    loss = multitask_loss(output, target_class, target_return, LossWeights())
    expected = torch.nn.functional.binary_cross_entropy_with_logits(confidence_logit[:3], torch.tensor([1.0, 0.0, 0.0]))
    assert loss.confidence.item() == pytest.approx(expected.item(), rel=1e-6)
    # No gradient reaches the regression head through the confidence target.
    pred_return.requires_grad_(True)
    multitask_loss(ModelOutput(logits, pred_return, confidence_logit), target_class, target_return,
                   LossWeights(classification=0.0, regression=0.0, confidence=1.0)).total.backward()
    assert pred_return.grad is None or torch.count_nonzero(pred_return.grad) == 0
