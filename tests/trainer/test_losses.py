"""Each loss against a value computed by hand (plain math) on a tiny example."""

from __future__ import annotations

import math

import pytest
import torch

from iterkd.trainer.losses import (
    contrastive_loss,
    fault_token_weights,
    pair_margin,
    sequence_logprobs,
    sft_loss,
)

# One sequence of 3 tokens over a vocabulary of 3. Position t's logits predict token t+1.
LOGITS = [[[1.0, 2.0, 0.0], [0.5, 0.0, 1.5], [0.0, 0.0, 0.0]]]
IDS = [2, 1, 2]  # token 0 is the prompt (masked), tokens 1 and 2 the completion


def log_softmax(row: list[float], k: int) -> float:
    return row[k] - math.log(sum(math.exp(x) for x in row))


def test_sft_loss_masks_prompt_and_padding_by_hand() -> None:
    logits = torch.tensor(LOGITS)
    labels = torch.tensor([[-100, 1, 2]])
    # predicted: token 1 from position 0, token 2 from position 1
    expected = -(log_softmax(LOGITS[0][0], 1) + log_softmax(LOGITS[0][1], 2)) / 2
    assert sft_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    # a padded position (label -100) changes nothing
    padded = torch.tensor([[[1.0, 2.0, 0.0], [0.5, 0.0, 1.5], [9.0, -9.0, 3.0], [0.0, 0.0, 0.0]]])
    assert sft_loss(padded, torch.tensor([[-100, 1, 2, -100]])).item() == pytest.approx(expected, rel=1e-6)


def test_sft_loss_example_weights_by_hand() -> None:
    # two sequences: the first as above (2 scored tokens), the second scores one token with weight 3
    logits = torch.tensor([LOGITS[0], [[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[-100, 1, 2], [-100, -100, 0]])
    ce1 = [-log_softmax(LOGITS[0][0], 1), -log_softmax(LOGITS[0][1], 2)]
    ce2 = -log_softmax([2.0, 0.0, 0.0], 0)
    expected = (1.0 * sum(ce1) + 3.0 * ce2) / (1.0 * 2 + 3.0 * 1)
    got = sft_loss(logits, labels, torch.tensor([1.0, 3.0])).item()
    assert got == pytest.approx(expected, rel=1e-6)
    unweighted = (sum(ce1) + ce2) / 3
    assert sft_loss(logits, labels).item() == pytest.approx(unweighted, rel=1e-6)


def test_sequence_logprobs_with_token_weights_by_hand() -> None:
    logits = torch.tensor(LOGITS)
    labels = torch.tensor([[-100, 1, 2]])
    lp1, lp2 = log_softmax(LOGITS[0][0], 1), log_softmax(LOGITS[0][1], 2)
    s, n = sequence_logprobs(logits, labels)
    assert s.item() == pytest.approx(lp1 + lp2, rel=1e-6) and n.item() == 2
    s, n = sequence_logprobs(logits, labels, torch.tensor([[1.0, 1.0, 3.0]]))
    assert s.item() == pytest.approx(lp1 + 3 * lp2, rel=1e-6) and n.item() == pytest.approx(4.0)


def test_infonce_by_hand() -> None:
    c, r1, r2, t = -1.0, -2.0, -0.5, 0.5
    expected = -c / t + math.log(math.exp(c / t) + math.exp(r1 / t) + math.exp(r2 / t))
    got = contrastive_loss(torch.tensor([c, -3.0]), torch.tensor([[r1, r2], [0.0, 0.0]]),
                           torch.tensor([[True, True], [False, False]]), "infonce", temperature=t)
    assert got.item() == pytest.approx(expected, rel=1e-6)  # the row without rejected answers is left out


def test_infonce_masks_missing_rejected() -> None:
    c, r1 = -1.0, -2.0
    expected = -c + math.log(math.exp(c) + math.exp(r1))
    got = contrastive_loss(torch.tensor([c]), torch.tensor([[r1, 100.0]]), torch.tensor([[True, False]]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_dpo_by_hand() -> None:
    beta = 0.1
    c, r, rc, rr = -10.0, -12.0, -11.0, -11.5
    z = beta * ((c - rc) - (r - rr))
    expected = math.log(1 + math.exp(-z))  # -log sigmoid(z)
    got = contrastive_loss(torch.tensor([c]), torch.tensor([[r]]), torch.tensor([[True]]), "dpo", beta=beta,
                           ref_chosen=torch.tensor([rc]), ref_rejected=torch.tensor([[rr]]))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="reference"):
        contrastive_loss(torch.tensor([c]), torch.tensor([[r]]), torch.tensor([[True]]), "dpo")


def test_margin_by_hand() -> None:
    # pairs: c - r = 0.25 (loss 1 - 0.25) and 2.0 (loss 0); mean over the row's pairs
    got = contrastive_loss(torch.tensor([-1.0]), torch.tensor([[-1.25, -3.0]]), torch.tensor([[True, True]]),
                           "margin", margin=1.0)
    assert got.item() == pytest.approx((0.75 + 0.0) / 2, rel=1e-6)


def test_unlikelihood_by_hand() -> None:
    # -log(1 - q) with q = p_r / (p_c + p_r), the rejected answer's share of the pair's likelihood
    c, r1, r2 = -1.0, -0.5, -2.0
    share = [math.exp(r) / (math.exp(c) + math.exp(r)) for r in (r1, r2)]
    expected = (-math.log(1 - share[0]) - math.log(1 - share[1])) / 2
    got = contrastive_loss(torch.tensor([c]), torch.tensor([[r1, r2]]), torch.tensor([[True, True]]),
                           "unlikelihood")
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_unlikelihood_matters_when_every_answer_is_unlikely() -> None:
    """An untrained model gives every answer about 1/vocab per token (score -8.3 for 4096 tokens):
    the term and its gradient must still be of order one, not of order p_r (2e-4)."""
    c = torch.tensor([-8.3], requires_grad=True)
    r = torch.tensor([[-8.3]], requires_grad=True)
    got = contrastive_loss(c, r, torch.tensor([[True]]), "unlikelihood")
    got.backward()
    assert got.item() == pytest.approx(math.log(2), rel=1e-6)
    assert r.grad is not None and r.grad.item() == pytest.approx(0.5) and c.grad.item() == pytest.approx(-0.5)


def test_no_pairs_gives_zero_and_keeps_graph() -> None:
    c = torch.tensor([-1.0], requires_grad=True)
    got = contrastive_loss(c, torch.zeros((1, 1)), torch.zeros((1, 1), dtype=torch.bool))
    assert got.item() == 0.0
    got.backward()
    assert c.grad is not None


def test_pair_margin() -> None:
    got = pair_margin(torch.tensor([-1.0, -2.0]), torch.tensor([[-3.0, 0.0], [-2.5, -4.0]]),
                      torch.tensor([[True, False], [True, True]]))
    assert got.item() == pytest.approx((2.0 + 0.5 + 2.0) / 3)


def test_fault_token_weights_mark_the_differing_tokens() -> None:
    chosen = [5, 6, 7, 8, 9]
    rejected = [5, 6, 1, 8, 9, 2]
    cw, rw = fault_token_weights(chosen, rejected, 2.0)
    assert cw == [1.0, 1.0, 3.0, 1.0, 1.0]
    assert rw == [1.0, 1.0, 3.0, 1.0, 1.0, 3.0]
    assert fault_token_weights(chosen, rejected, 0.0) == ([1.0] * 5, [1.0] * 6)
