import numpy as np
import torch

from pipelines.batching import to_image, to_model


def test_to_model_maps_uint8_bhwc_to_bchw_in_minus_one_one():
    x_BHWC = torch.tensor([0, 255, 128], dtype=torch.uint8).reshape(1, 1, 1, 3).expand(2, 4, 5, 3).contiguous()
    x_BCHW = to_model(x_BHWC)
    assert x_BCHW.shape == (2, 3, 4, 5)
    assert x_BCHW.dtype == torch.float32
    assert torch.all(x_BCHW[:, 0] == -1.0)
    assert torch.all(x_BCHW[:, 1] == 1.0)
    assert torch.allclose(x_BCHW[:, 2], torch.full((2, 4, 5), 128 / 127.5 - 1), atol=1e-6)


def test_to_image_inverts_to_model_exactly():
    x_BHWC = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 8, 6, 3), dtype=np.uint8))
    out = to_image(to_model(x_BHWC))
    assert out.dtype == np.uint8
    assert out.shape == (3, 8, 6, 3)
    np.testing.assert_array_equal(out, x_BHWC.numpy())


def test_to_image_clips_out_of_range_values():
    x_BCHW = torch.tensor([-3.0, 2.0, 0.0]).reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(to_image(x_BCHW)[0, 0, 0], [0, 255, 128])
