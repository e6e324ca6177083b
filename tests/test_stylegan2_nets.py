"""The style-based networks (gans/nets/style.py, gans/nets/stylegan2.py) against NVIDIA's stylegan2-ada-pytorch.

Reference values marked "official" were computed with the official code (NVlabs/stylegan2-ada-pytorch at commit
d72cc7d0, its reference PyTorch ops on CPU), never imported here: the command is next to each.
"""

import math

import pytest
import torch

from gans.errors import ConfigurationError
from gans.nets.equalized import EqualizedLinear, bias_act
from gans.nets.style import MappingNetwork, mix_styles, normalize_2nd_moment, truncate

# ---------------------------------------------------------------------------------------------------------------
# Mapping network, truncation, style mixing


@pytest.mark.parametrize(("z_dim", "c_dim", "num_ws", "shape"), [(16, 0, 5, (3, 5, 32)), (16, 4, 7, (3, 7, 32)),
                                                                  (0, 4, None, (3, 32))])
def test_mapping_network_shapes(z_dim, c_dim, num_ws, shape):
    mapping = MappingNetwork(z_dim, c_dim, 32, num_ws, num_layers=3)
    assert mapping(torch.randn(3, z_dim), torch.randn(3, c_dim)).shape == shape
    if num_ws is not None:  # every layer gets the same w before truncation and mixing
        ws = mapping(torch.randn(3, z_dim), torch.randn(3, c_dim))
        torch.testing.assert_close(ws, ws[:, :1].expand_as(ws))


def test_mapping_network_state_dict_and_outputs_are_the_officials():
    # official: torch.manual_seed(0); m = MappingNetwork(z_dim=4, c_dim=3, w_dim=4, num_ws=2, num_layers=2).eval();
    # m.w_avg.copy_(torch.tensor([0.5, -0.25, 1.0, 0.0])); z = torch.linspace(-1, 1, 8).reshape(2, 4);
    # c = torch.eye(3)[:2]; m(z, c)[:, 0]; m(z, c, truncation_psi=0.5, truncation_cutoff=1)[:, 0]
    # (the official classes draw their initial weights in the same order, so the same seed gives the same weights)
    torch.manual_seed(0)
    mapping = MappingNetwork(z_dim=4, c_dim=3, w_dim=4, num_ws=2, num_layers=2)
    assert list(mapping.state_dict()) == ["w_avg", "embed.weight", "embed.bias", "fc0.weight", "fc0.bias",
                                          "fc1.weight", "fc1.bias"]
    mapping.w_avg.copy_(torch.tensor([0.5, -0.25, 1.0, 0.0]))
    z, c = torch.linspace(-1, 1, 8).reshape(2, 4), torch.eye(3)[:2]
    w = torch.tensor([[0.187115, -0.024978, 0.158605, -0.043752], [-0.196228, 3.130171, 0.088407, -0.122131]])
    torch.testing.assert_close(mapping(z, c)[:, 0], w, atol=2e-6, rtol=1e-5)
    truncated = mapping(z, c, truncation_psi=0.5, truncation_cutoff=1)
    torch.testing.assert_close(truncated[:, 0], torch.tensor([[0.343558, -0.137489, 0.579302, -0.021876],
                                                              [0.151886, 1.440085, 0.544203, -0.061065]]),
                               atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(truncated[:, 1], w, atol=2e-6, rtol=1e-5)  # after the cutoff: untouched


def test_mapping_normalizes_z_and_the_embedded_label():
    # normalize_2nd_moment: a latent's scale does not matter; its output has unit mean square
    x = torch.randn(5, 12) * 3
    torch.testing.assert_close(normalize_2nd_moment(x).square().mean(dim=1), torch.ones(5))
    mapping = MappingNetwork(8, 3, 16, 4, num_layers=2)
    z, c = torch.randn(2, 8), torch.randn(2, 3)
    torch.testing.assert_close(mapping(z * 5, c * 0.1), mapping(z, c))


def test_discriminator_mapping_has_no_latent_and_no_mean():
    mapping = MappingNetwork(z_dim=0, c_dim=3, w_dim=8, num_ws=None, w_avg_beta=None)
    assert "w_avg" not in mapping.state_dict() and "embed.weight" in mapping.state_dict()
    assert len([k for k in mapping.state_dict() if k.startswith("fc")]) == 16  # 8 layers, weight and bias
    with pytest.raises(ConfigurationError, match="z_dim=0"):
        MappingNetwork(z_dim=0, c_dim=0, w_dim=8, num_ws=None)


def test_truncation_psi_0_gives_the_mean_and_psi_1_leaves_ws():
    torch.manual_seed(0)
    ws, w_avg = torch.randn(4, 6, 8), torch.randn(8)
    torch.testing.assert_close(truncate(ws, w_avg, 0.0), w_avg.expand_as(ws))
    assert torch.equal(truncate(ws, w_avg, 1.0), ws)
    torch.testing.assert_close(truncate(ws, w_avg, 0.7), w_avg + 0.7 * (ws - w_avg))
    cut = truncate(ws, w_avg, 0.0, cutoff=2)
    torch.testing.assert_close(cut[:, :2], w_avg.expand(4, 2, 8))
    assert torch.equal(cut[:, 2:], ws[:, 2:])  # layers from the cutoff on are not truncated
    assert not torch.equal(ws[:, :2], cut[:, :2])  # the input itself is left alone (a pure function)

    mapping = MappingNetwork(8, 0, 16, 6, num_layers=2)
    mapping.w_avg.normal_()
    z = torch.randn(3, 8)
    torch.testing.assert_close(mapping(z, truncation_psi=0), mapping.w_avg.expand(3, 6, 16))
    torch.testing.assert_close(mapping(z, truncation_psi=1), mapping(z))
    partial = mapping(z, truncation_psi=0, truncation_cutoff=4)
    torch.testing.assert_close(partial[:, :4], mapping.w_avg.expand(3, 4, 16))
    torch.testing.assert_close(partial[:, 4:], mapping(z)[:, 4:])


def test_style_mixing_takes_the_second_latent_from_the_crossover_layer_on():
    ws, ws2 = torch.zeros(3, 6, 4), torch.ones(3, 6, 4)
    for crossover in (0, 2, 5, 6):
        mixed = mix_styles(ws, ws2, crossover)
        assert mixed[:, :, 0].tolist() == [[float(i >= crossover) for i in range(6)]] * 3
    mixed = mix_styles(ws, ws2, torch.tensor(3))  # a tensor drawn on the device, as the official loss draws it
    assert mixed[0, :, 0].tolist() == [0, 0, 0, 1, 1, 1]
    per_sample = mix_styles(ws, ws2, torch.tensor([1, 4, 6]))
    assert per_sample[:, :, 0].tolist() == [[0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0] * 6]


def test_w_avg_moves_towards_the_batch_mean_only_when_asked():
    torch.manual_seed(0)
    mapping = MappingNetwork(8, 0, 16, 3, num_layers=2, w_avg_beta=0.9)
    mapping.w_avg.fill_(1.0)
    z = torch.randn(5, 8)
    mapping(z)
    torch.testing.assert_close(mapping.w_avg, torch.ones(16))  # no update by default (evaluation, sampling)
    w = mapping(z)[:, 0]
    mapping(z, update_emas=True)
    torch.testing.assert_close(mapping.w_avg, 0.9 * torch.ones(16) + 0.1 * w.mean(dim=0))


def test_equalized_linear_fused_activation_is_the_official_fully_connected_layer():
    # bias_act: act(x W^T * lr / sqrt(fan_in) + b * lr) * sqrt(2) for lrelu: the gain after the activation
    torch.manual_seed(0)
    layer = EqualizedLinear(10, 6, activation="lrelu", lr_multiplier=0.01, bias_init=0.5)
    x = torch.randn(4, 10)
    pre = x @ (layer.weight * 0.01 / math.sqrt(10)).t() + layer.bias * 0.01
    torch.testing.assert_close(layer(x), torch.nn.functional.leaky_relu(pre, 0.2) * math.sqrt(2))
    torch.testing.assert_close(bias_act(torch.full((1, 2, 3), 5.0), torch.tensor([1.0, -7.0]), "relu", clamp=4),
                               torch.tensor([[[4.0] * 3, [0.0] * 3]]))
    with pytest.raises(ConfigurationError, match="activation='gelu'"):
        EqualizedLinear(3, 3, activation="gelu")
