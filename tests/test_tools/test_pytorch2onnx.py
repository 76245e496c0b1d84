"""ONNX export: the KAN ops' decomposition while exporting, and tools/deployment/pytorch2onnx.py
on tiny KAT and RKAN models with both exporters of torch (TorchScript-based and dynamo).

The tool runs in this process (runpy, with sys.argv set), as tests/test_tools/test_analysis_tools
does; onnxruntime runs every exported file against PyTorch.
"""
import importlib.util
import os.path as osp
import re
from typing import Tuple
from unittest import mock

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from torch import nn

from mmrkan.analysis import build_task_model
from mmrkan.ops import GroupRational, KANConv2d
from mmrkan.ops.export import is_exporting
from mmrkan.testing.tools import run_script

onnx = pytest.importorskip('onnx', reason='ONNX export tests need onnx: pip install onnx')
onnxruntime = pytest.importorskip(
    'onnxruntime', reason='ONNX export tests need onnxruntime: pip install onnxruntime')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'deployment', 'pytorch2onnx.py')
KAT_CLS = osp.join(REPO, 'configs', 'demo', 'kat-micro_shapes-imagenet-64px.py')
KAT_SEG = osp.join(REPO, 'configs', 'demo', 'upernet_kat-micro_shapes-ade20k-128x128.py')
RKAN_DET = osp.join(REPO, 'configs', 'demo', 'mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py')
RKAN_CLS = osp.join(REPO, 'configs', 'rkan', 'rkanet-50_8xb32_in1k.py')
# RKANet-50's config with a narrow ResNet-18 inside (stage 4: 128 channels), for a fast export.
RKAN_CLS_TINY = ['--cfg-options', 'model.backbone.backbone.depth=18',
                 'model.backbone.backbone.base_channels=16', 'model.head.in_channels=128']

needs_onnxscript = pytest.mark.skipif(
    importlib.util.find_spec('onnxscript') is None,
    reason='the dynamo exporter needs onnxscript: pip install onnxscript')
EXPORTERS = [pytest.param(False, id='torchscript'),
             pytest.param(True, id='dynamo', marks=needs_onnxscript)]
STANDARD_DOMAINS = ('', 'ai.onnx')


def run_tool(capsys, *args: str) -> Tuple[int, str, str]:
    """Run ``tools/deployment/pytorch2onnx.py args``; returns (exit status, stdout, stderr)."""
    return run_script(capsys, TOOL, *args)


def printed_difference(out: str) -> float:
    match = re.search(r'max abs difference: (\S+) ', out)
    assert match, out
    return float(match.group(1))


def onnxruntime_outputs(path: str, inputs: torch.Tensor) -> list:
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: inputs.numpy()})


def assert_standard_onnx(path: str) -> None:
    model = onnx.load(path)
    onnx.checker.check_model(model)
    domains = {node.domain for node in model.graph.node}
    assert domains <= set(STANDARD_DOMAINS), domains


# ------------------------------------------------------------------------------ the decomposition
EXPORTING_SEEN = []  # is_exporting() in each forward (not a module attribute: export copies it)


class _KANOps(nn.Module):
    """Both KAN ops (Chebyshev and RBF convolutions, a group-rational activation), recording
    whether they saw an export."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = KANConv2d(degree=3, stride=2)
        self.rbf_conv = KANConv2d(basis='rbf', num_bumps=4)
        self.rational = GroupRational(num_groups=2, init='swish')
        with torch.no_grad():  # away from the init, so every coefficient matters
            self.rational.weight_denominator.add_(0.1 * torch.randn(2, 4))
            self.rbf_conv.base_bias.fill_(0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        EXPORTING_SEEN.append(is_exporting())
        y = self.rbf_conv(self.conv(x))
        return self.rational(y.permute(0, 2, 3, 1))


@pytest.mark.parametrize('dynamo', EXPORTERS)
def test_kan_ops_export_as_standard_onnx_ops(tmp_path, dynamo):
    torch.manual_seed(0)
    EXPORTING_SEEN.clear()
    module = _KANOps().eval()
    x = torch.randn(2, 4, 9, 7)
    with torch.no_grad():
        expected = module(x)  # the compiled kernels where they are built
    assert EXPORTING_SEEN == [False]
    path = str(tmp_path / 'kan_ops.onnx')
    options = dict(external_data=False) if dynamo else {}
    torch.onnx.export(module, (x, ), path, dynamo=dynamo, input_names=['x'], **options)
    assert True in EXPORTING_SEEN[1:]
    assert_standard_onnx(path)
    got, = onnxruntime_outputs(path, x)
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-5)
    assert not is_exporting()


def test_kan_ops_keep_their_kernels_outside_onnx_export():
    """torch.export (not ONNX) keeps the compiled ops: they have fake kernels."""
    library = pytest.importorskip('mmrkan._ext', reason='needs the compiled mmrkan._ext')
    del library
    exported = torch.export.export(_KANOps().eval(), (torch.randn(1, 4, 6, 6), ))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == 'call_function'}
    assert {'mmrkan.group_rational_forward.default',
            'mmrkan.kan_conv2d_forward.default'} <= targets, targets


# ------------------------------------------------------------------------------------- the tool
@pytest.fixture(scope='module')
def kat_checkpoint(tmp_path_factory) -> str:
    """A checkpoint of the KAT demo classifier, weights moved away from their initialisation."""
    torch.manual_seed(1)
    model = build_task_model(Config.fromfile(KAT_CLS))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    path = str(tmp_path_factory.mktemp('ckpt') / 'kat.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


@pytest.mark.parametrize('dynamo', EXPORTERS)
def test_kat_classifier_with_checkpoint(capsys, tmp_path, kat_checkpoint, dynamo):
    out_file = str(tmp_path / 'kat.onnx')
    status, out, err = run_tool(capsys, KAT_CLS, kat_checkpoint, '--shape', 64, 64, '--out',
                                out_file, *(['--dynamo'] if dynamo else []))
    assert status == 0, err[-3000:]
    assert printed_difference(out) <= 1e-4
    assert f'opset {18 if dynamo else 17}' in out
    assert_standard_onnx(out_file)
    # The file holds the checkpoint's weights: same logits as the model that loads it, on
    # another input than the tool's.
    model = build_task_model(Config.fromfile(KAT_CLS)).eval()
    model.load_state_dict(torch.load(kat_checkpoint)['state_dict'])
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(image, mode='tensor')
    logits, = onnxruntime_outputs(out_file, image)
    assert logits.shape == (1, 3)
    np.testing.assert_allclose(logits, expected.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize('dynamo', EXPORTERS)
def test_rkan_classifier(capsys, tmp_path, dynamo):
    out_file = str(tmp_path / 'rkan.onnx')
    status, out, err = run_tool(capsys, RKAN_CLS, '--shape', 64, '--out', out_file,
                                *(['--dynamo'] if dynamo else []), *RKAN_CLS_TINY)
    assert status == 0, err[-3000:]
    assert 'no checkpoint given' in out
    assert printed_difference(out) <= 1e-4
    assert_standard_onnx(out_file)
    ops = {node.op_type for node in onnx.load(out_file).graph.node}
    assert 'Tanh' in ops  # the Chebyshev basis of the KAN convolution, decomposed
    logits, = onnxruntime_outputs(out_file, torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 1000)


@needs_onnxscript
def test_kat_upernet(capsys, tmp_path):
    """With the dynamo exporter: the TorchScript one fails in mmseg's pyramid pooling (see the
    README, "Export to ONNX")."""
    out_file = str(tmp_path / 'upernet.onnx')
    status, out, err = run_tool(capsys, KAT_SEG, '--shape', 64, 96, '--out', out_file, '--dynamo')
    assert status == 0, err[-3000:]
    assert printed_difference(out) <= 1e-4
    seg_logits, = onnxruntime_outputs(out_file, torch.randn(1, 3, 64, 96))
    assert seg_logits.shape == (1, 4, 64, 96)


def test_detector_backbone_and_neck(capsys, tmp_path):
    out_file = str(tmp_path / 'det.onnx')
    status, out, err = run_tool(capsys, RKAN_DET, '--shape', 64, 96, '--out', out_file)
    assert status == 0, err[-3000:]
    assert printed_difference(out) <= 1e-4
    assert 'outputs feat0, feat1, feat2, feat3, feat4' in out
    features = onnxruntime_outputs(out_file, torch.randn(1, 3, 64, 96))
    assert [f.shape[-2:] for f in features] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]


def test_difference_over_tolerance_fails_with_status_1(capsys, tmp_path):
    out_file = tmp_path / 'kat.onnx'
    status, out, err = run_tool(capsys, KAT_CLS, '--shape', 64, '--out', out_file,
                                '--tolerance', 1e-12)
    assert status == 1, err[-3000:]
    assert printed_difference(out) > 1e-12
    assert err.startswith('error: ') and '> --tolerance 1e-12' in err, err[-3000:]
    assert out_file.is_file()  # kept for inspection


class _NotExportable(BaseModel):

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return inputs


@pytest.mark.parametrize('args, fragments', [
    (['configs/nope.py'], ["config file 'configs/nope.py' does not exist"]),
    ([KAT_CLS, 'missing.pth'], ["checkpoint 'missing.pth' does not exist"]),
    ([KAT_CLS, '--shape', 0, 64], ['--shape 0 64', 'positive integers']),
    ([KAT_CLS, '--shape', 64, 64, 64], ['--shape 64 64 64', 'give H W']),
    ([RKAN_DET, '--shape', 100, 96], ['--shape 100 96', 'multiples of 32 (pad_size_divisor)']),
    ([KAT_CLS, '--device', 'gpu0'], ["--device 'gpu0' is not a device"]),
    ([KAT_CLS, '--tolerance', -1], ['--tolerance -1.0: must be >= 0']),
])
def test_user_errors(capsys, tmp_path, args, fragments):
    status, _, err = run_tool(capsys, *args, '--out', tmp_path / 'x.onnx')
    assert status == 2, err[-2000:]
    assert len(err.strip().splitlines()) == 1, err[-2000:]
    assert err.startswith('error: ')
    for fragment in fragments:
        assert fragment in err, err
    assert not (tmp_path / 'x.onnx').exists()


def test_unsupported_model_type(capsys, tmp_path):
    with mock.patch('mmrkan.deployment.onnx_export.build_task_model',
                    return_value=_NotExportable()):
        status, _, err = run_tool(capsys, KAT_CLS, '--out', tmp_path / 'x.onnx')
    assert status == 2, err[-2000:]
    assert err.strip() == ('error: model type _NotExportable is not supported; supported: '
                           'ImageClassifier (mmpretrain), EncoderDecoder such as UperNet (mmseg), '
                           'detectors with backbone and neck such as Mask R-CNN (mmdet)')


def test_checkpoint_of_another_model(capsys, tmp_path, kat_checkpoint):
    status, _, err = run_tool(capsys, RKAN_DET, kat_checkpoint, '--shape', 64,
                              '--out', tmp_path / 'x.onnx')
    assert status == 2, err[-2000:]
    assert len(err.strip().splitlines()) == 1, err[-2000:]
    assert f"checkpoint '{kat_checkpoint}' does not fit the model of the config" in err
    assert 'missing keys' in err
