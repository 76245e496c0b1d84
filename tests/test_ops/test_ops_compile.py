"""torch.compile(fullgraph=True) traces a module using both ops, forward and backward."""
import pytest
import torch
from torch import nn

from mmrkan.ops import GroupRational, KANConv2d, library


class TinyKanBlock(nn.Module):
    """KAN conv on a feature map, then a group-rational activation over its channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = KANConv2d(degree=2, stride=2)
        self.act = GroupRational(num_groups=2, init='swish')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.act(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) + y


@pytest.mark.skipif(not library.SUPPORTS_COMPILE,
                    reason=f'torch {torch.__version__} < 2.4 lacks torch.library.register_fake and '
                    'register_autograd, which torch.compile needs to trace the ops')
def test_compile_fullgraph_forward_and_backward(cpu_kernel):
    torch.manual_seed(0)
    module = TinyKanBlock()
    x = torch.randn(2, 4, 7, 6, requires_grad=True)
    expected = module(x)
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, *module.parameters()])

    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True)
    out = compiled(x)
    actual_grads = torch.autograd.grad(out.square().sum(), [x, *module.parameters()])
    torch.testing.assert_close(out, expected)
    for actual, wanted in zip(actual_grads, expected_grads):
        torch.testing.assert_close(actual, wanted)
