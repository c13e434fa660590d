"""Per-pixel mean and variance over the channels of a BCHW tensor, the statistics of the channel LayerNorms
(NAFNet's, Restormer's / DIRformer's).

On the CPU, torch.var_mean (and Tensor.var) over dim 1 of a contiguous BCHW tensor is a strided single-pass
reduction that runs about 3x slower, forward and backward, than two plain passes (mean, then the mean of the
squared deviations): `python -m bench.channel_norm` measures it. Other devices keep torch's single pass, which
reads the tensor once (no GPU has timed the two yet). Both are the biased variance; they differ by float rounding.
"""

import torch


def channel_var_mean(x_BCHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(variance, mean), each B1HW: the biased variance over dim 1, as torch.var_mean(unbiased=False)."""
    if x_BCHW.device.type != "cpu":
        return torch.var_mean(x_BCHW, dim=1, unbiased=False, keepdim=True)
    mean = x_BCHW.mean(dim=1, keepdim=True)
    centred = x_BCHW - mean
    return (centred * centred).mean(dim=1, keepdim=True), mean
