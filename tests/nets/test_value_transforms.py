from __future__ import annotations

import math

import pytest
import torch

from rltransfer.nets.value_transforms import (
    SupportError,
    inverse_value_rescale,
    scalar_to_support,
    support_bins,
    support_to_scalar,
    value_rescale,
)


def test_support_bins() -> None:
    assert support_bins(2).tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]


def test_two_hot_hand_computed_positive() -> None:
    # x = h^-1(2.3) -> 0.7 on bin 2, 0.3 on bin 3 (support -5..5: indices 7 and 8)
    x = inverse_value_rescale(torch.tensor([2.3], dtype=torch.float64))
    p = scalar_to_support(x, 5)
    expected = torch.zeros(1, 11, dtype=torch.float64)
    expected[0, 7], expected[0, 8] = 0.7, 0.3
    torch.testing.assert_close(p, expected)


def test_two_hot_hand_computed_negative_and_integer() -> None:
    # h(x) = -1.25 -> floor -2: bin -2 gets 0.25, bin -1 gets 0.75; h(x) = 0 -> bin 0 only
    x = inverse_value_rescale(torch.tensor([-1.25, 0.0], dtype=torch.float64))
    p = scalar_to_support(x, 3)
    expected = torch.zeros(2, 7, dtype=torch.float64)
    expected[0, 1], expected[0, 2] = 0.25, 0.75
    expected[1, 3] = 1.0
    torch.testing.assert_close(p, expected)


def test_support_expectation_is_h_of_x_and_rows_sum_to_one() -> None:
    x = torch.tensor([[0.0, 1.0, -3.5], [17.0, -250.0, 1000.0]])
    p = scalar_to_support(x, 300)
    assert p.shape == (2, 3, 601) and p.dtype == torch.float32
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3))
    torch.testing.assert_close((p * support_bins(300)).sum(-1), value_rescale(x))
    assert int((p > 0).sum(-1).max()) <= 2


def test_round_trip_through_logits() -> None:
    x = torch.tensor([-5000.0, -37.2, -1.0, 0.0, 0.4, 3.0, 99.9, 12345.0], dtype=torch.float64)
    logits = torch.log(scalar_to_support(x, 300))  # -inf off the two bins: softmax gives p back
    torch.testing.assert_close(support_to_scalar(logits, 300), x, rtol=1e-9, atol=1e-9)
    y = x.float()
    torch.testing.assert_close(support_to_scalar(torch.log(scalar_to_support(y, 300)), 300), y,
                               rtol=1e-4, atol=1e-3)


def test_values_beyond_support_are_clipped() -> None:
    x = torch.tensor([1e6, -1e6, 1e9])
    p = scalar_to_support(x, 10)
    assert p[0, -1] == 1.0 and p[1, 0] == 1.0 and p[2, -1] == 1.0
    assert float(p.sum()) == 3.0
    back = support_to_scalar(torch.log(p), 10)
    h_inv_10 = float(inverse_value_rescale(torch.tensor(10.0, dtype=torch.float64)))
    torch.testing.assert_close(back, torch.tensor([h_inv_10, -h_inv_10, h_inv_10]))
    # h^-1(10) with eps=1e-3: x = 117.43 since sqrt(118.43) - 1 + 0.11743 = 10.000
    assert math.isclose(h_inv_10, 117.43, abs_tol=0.01)


def test_uniform_logits_give_zero() -> None:
    out = support_to_scalar(torch.zeros(4, 21), 10)
    torch.testing.assert_close(out, torch.zeros(4), atol=1e-5, rtol=0)


def test_bad_arguments_raise() -> None:
    with pytest.raises(SupportError, match="support_size"):
        scalar_to_support(torch.zeros(2), 0)
    with pytest.raises(SupportError, match="2 \\* support_size \\+ 1 = 21"):
        support_to_scalar(torch.zeros(3, 20), 10)
    assert issubclass(SupportError, ValueError)
