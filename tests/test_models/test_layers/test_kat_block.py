"""KATBlock and RelPosMultiheadAttention: block maths, windows with padding, relative positions."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models.backbones.vit_sam import Attention as SAMAttention

from mmrkan.models.layers import KATBlock, RelPosMultiheadAttention


def _block(**kwargs) -> KATBlock:
    torch.manual_seed(0)
    block = KATBlock(embed_dims=16, num_heads=2, feedforward_channels=64, **kwargs)
    return block.eval()


def test_block_is_pre_norm_attention_then_kan():
    block = _block()
    x = torch.randn(2, 7, 16)
    y = x + block.attn(block.ln1(x))
    torch.testing.assert_close(block(x), y + block.kan(block.ln2(y)))
    assert block.ln1.eps == 1e-6 and block.attn.qkv.bias is not None


def test_windowed_attention_equals_global_attention_inside_each_window():
    windowed = _block(window_size=3)
    global_ = _block()
    global_.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 6 * 3, 16)  # a 6x3 grid = two 3x3 windows, one above the other
    out = windowed(x, (6, 3))
    top, bottom = x[:, :9], x[:, 9:]
    torch.testing.assert_close(out[:, :9], global_(top, (3, 3)))
    torch.testing.assert_close(out[:, 9:], global_(bottom, (3, 3)))


def test_windows_pad_grids_that_are_not_multiples_of_the_window():
    block = _block(window_size=4)
    x = torch.randn(1, 5 * 3, 16)  # a 5x3 grid, padded to 8x4: windows of rows 0-3 and 4-7
    out = block(x, (5, 3)).view(1, 5, 3, 16)
    # The top window by hand: rows 0-3 of ln1(x) with one zero column (ViTDet pads after the
    # norm; padded tokens take part as keys), attended, cropped back.
    window = F.pad(block.ln1(x).view(1, 5, 3, 16)[:, :4], (0, 0, 0, 1))
    attended = block.attn(window.reshape(1, 16, 16)).view(1, 4, 4, 16)[:, :, :3]
    y = x.view(1, 5, 3, 16)[:, :4] + attended
    torch.testing.assert_close(out[:, :4], y + block.kan(block.ln2(y)))


def test_zero_relative_positions_change_nothing():
    plain = RelPosMultiheadAttention(16, 2)
    with_rel_pos = RelPosMultiheadAttention(16, 2, rel_pos_size=(4, 4))
    with_rel_pos.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 12, 16)
    torch.testing.assert_close(with_rel_pos(x, (3, 4)), plain(x))


@pytest.mark.parametrize('hw, table', [((4, 4), (4, 4)), ((3, 5), (4, 4))])
def test_relative_positions_match_mmpretrain_sam_attention(hw, table):
    torch.manual_seed(0)
    ours = RelPosMultiheadAttention(16, 2, rel_pos_size=table)
    with torch.no_grad():
        ours.rel_pos_h.normal_()
        ours.rel_pos_w.normal_()
    reference = SAMAttention(16, num_heads=2, use_rel_pos=True, input_size=table)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, *hw, 16)
    torch.testing.assert_close(
        ours(x.flatten(1, 2), hw), reference(x).flatten(1, 2), rtol=1e-5, atol=1e-5)


def test_relative_positions_receive_gradients():
    attn = RelPosMultiheadAttention(16, 2, rel_pos_size=(3, 3))
    with torch.no_grad():
        attn.rel_pos_h.normal_()
    attn(torch.randn(1, 9, 16), (3, 3)).sum().backward()
    assert attn.rel_pos_h.grad.abs().sum() > 0 and attn.rel_pos_w.grad.abs().sum() > 0


def test_drop_path_drops_whole_images_not_windows():
    block = _block(drop_path_rate=0.5, window_size=2).train()
    with torch.no_grad():  # silence the mixer: the residual is the attention branch alone
        block.kan.fc2.weight.zero_()
        block.kan.fc2.bias.zero_()
    torch.manual_seed(3)
    x = torch.randn(64, 16, 16)  # 4x4 grids: four 2x2 windows per image
    with torch.no_grad():
        changed = (block(x, (4, 4)) - x).abs().amax(-1) > 0  # (image, token)
    assert changed.all(1).logical_or(~changed.any(1)).all(), 'dropped window by window'
    assert 0 < changed.all(1).sum() < 64


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match='embed_dims=16 must be divisible by num_heads=3'):
        KATBlock(16, 3, 64)
    with pytest.raises(ValueError, match='window_size=-1'):
        KATBlock(16, 2, 64, window_size=-1)
    with pytest.raises(ValueError, match='num_groups'):
        KATBlock(16, 2, 64, num_groups=5)
