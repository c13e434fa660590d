import torch

from models.nets.channel_stats import channel_var_mean


def test_channel_var_mean_equals_torchs_biased_var_mean_with_its_gradient():
    torch.manual_seed(0)
    x = (torch.randn(2, 16, 9, 7, dtype=torch.float64) * 3 + 5).requires_grad_()
    var, mean = channel_var_mean(x)
    want_var, want_mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
    assert var.shape == mean.shape == (2, 1, 9, 7)
    torch.testing.assert_close(var, want_var)
    torch.testing.assert_close(mean, want_mean)
    weights = torch.randn_like(var)
    (grad,) = torch.autograd.grad(((var + mean) * weights).sum(), x)
    (want_grad,) = torch.autograd.grad(((want_var + want_mean) * weights).sum(), x)
    torch.testing.assert_close(grad, want_grad)


def test_channel_var_mean_of_a_constant_pixel_is_zero():
    x = torch.full((1, 4, 2, 2), 0.7)
    var, mean = channel_var_mean(x)
    assert torch.all(var == 0) and torch.allclose(mean, torch.full((1, 1, 2, 2), 0.7))
