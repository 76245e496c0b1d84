"""tools/analysis_tools: get_flops, benchmark and visualize_kan on tiny models, and their errors.

The tools run in this process (runpy, with sys.argv set): the same code path as on the command
line, without paying the imports again for every call. One call runs as a real process.
"""
import os.path as osp
import re
from typing import Tuple

import pytest
import torch
import yaml
from mmengine.config import Config

from mmrkan.analysis import build_task_model, model_complexity
from mmrkan.testing.tools import run_python, run_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO, 'tools', 'analysis_tools')
KAT_CLS = osp.join(REPO, 'configs', 'demo', 'kat-micro_shapes-imagenet-64px.py')
KAT_SEG = osp.join(REPO, 'configs', 'demo', 'upernet_kat-micro_shapes-ade20k-128x128.py')
RKAN_DET = osp.join(REPO, 'configs', 'demo', 'mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py')
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def run_tool(capsys, tool: str, *args: str) -> Tuple[int, str, str]:
    """Run ``tools/analysis_tools/<tool>.py args``; returns (exit status, stdout, stderr)."""
    return run_script(capsys, osp.join(TOOLS, f'{tool}.py'), *args)


def expect_user_error(result: Tuple[int, str, str], *fragments: str) -> None:
    status, _, err = result
    assert status == 2, (status, err[-2000:])
    assert len(err.strip().splitlines()) == 1 or 'usage:' in err, err[-2000:]
    for fragment in fragments:
        assert fragment in err, err[-2000:]


@pytest.fixture(scope='module')
def rkan18_config(tmp_path_factory) -> str:
    """An RKAN ResNet-18 classifier: the RKANet-50 config with a smaller wrapped ResNet."""
    path = tmp_path_factory.mktemp('configs') / 'rkanet-18.py'
    path.write_text(f"_base_ = ['{REPO}/configs/rkan/rkanet-50_8xb32_in1k.py']\n"
                    'model = dict(backbone=dict(backbone=dict(depth=18)), '
                    'head=dict(in_channels=512))\n')
    return str(path)


def printed_number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, text
    return int(match.group(1).replace(',', ''))


# ---------------------------------------------------------------------------------------- get_flops
def test_get_flops_of_the_kat_demo_classifier(capsys):
    status, out, err = run_tool(capsys, 'get_flops', KAT_CLS, '--shape', 64)
    assert status == 0, err[-3000:]
    model = build_task_model(Config.fromfile(KAT_CLS)).eval()
    expected = model_complexity(model, (torch.randn(1, 3, 64, 64), ))
    params = sum(p.numel() for p in model.parameters())
    assert printed_number(r'Params: \S+ \(([\d,]+)\)', out) == params
    assert printed_number(r'Flops: \S+ \(([\d,]+) multiply-adds\)', out) == expected.flops
    assert 'Input shape: (1, 3, 64, 64)' in out
    assert re.search(r'by operator: .*group_rational', out), out
    assert 'scaled_dot_product_attention x4' in out  # listed as not counted

    status, out_with_attention, _ = run_tool(capsys, 'get_flops', KAT_CLS, '--shape', 64,
                                             '--count-attention')
    assert status == 0
    # 4 blocks x 2 heads x 65 x 65 tokens x (32 + 32) channels per head
    assert (printed_number(r'\(([\d,]+) multiply-adds\)', out_with_attention) -
            expected.flops) == 4 * 2 * 65 * 65 * 64


def test_get_flops_measures_at_the_configs_own_input_size(capsys):
    # The demo classifier works at 64 px (224 px before: 177 M FLOPs); its metafile's count.
    with open(osp.join(REPO, 'configs', 'demo', 'metafile.yml')) as f:
        (entry, ) = [e for e in yaml.safe_load(f)['Models'] if e['Name'] == 'kat-micro_shapes-imagenet-64px']
    status, out, err = run_tool(capsys, 'get_flops', KAT_CLS)
    assert status == 0, err[-3000:]
    assert "Input shape: (1, 3, 64, 64) (the test pipeline's ResizeEdge scale=64)" in out
    assert entry['Metadata']['Input Size'] == '64x64'
    assert printed_number(r'\(([\d,]+) multiply-adds\)', out) == entry['Metadata']['FLOPs']


@pytest.mark.parametrize('config, shape, kan_op, input_shape', [
    (RKAN_DET, (64, 96), 'kan_conv2d', '(1, 3, 64, 96)'),
    (KAT_SEG, (64, 64), 'group_rational', '(1, 3, 64, 64)'),
])
def test_get_flops_of_detectors_and_segmentors(capsys, config, shape, kan_op, input_shape):
    status, out, err = run_tool(capsys, 'get_flops', config, '--shape', *shape)
    assert status == 0, err[-3000:]
    assert f'Input shape: {input_shape}' in out
    assert re.search(rf'by operator: .*{kan_op}', out), out
    assert printed_number(r'\(([\d,]+) multiply-adds\)', out) > 0


def test_get_flops_errors(capsys, tmp_path):
    expect_user_error(run_tool(capsys, 'get_flops', tmp_path / 'none.py'), 'does not exist')
    expect_user_error(run_tool(capsys, 'get_flops', KAT_CLS, '--shape', 1, 2, 3), '--shape')
    expect_user_error(run_tool(capsys, 'get_flops', KAT_CLS, '--no-such-option'),
                      'unrecognized arguments: --no-such-option')
    other_task = tmp_path / 'action.py'
    other_task.write_text("default_scope = 'mmaction'\nmodel = dict(type='Recognizer3D')\n")
    expect_user_error(run_tool(capsys, 'get_flops', other_task), "default_scope='mmaction'")
    maskformer = tmp_path / 'maskformer.py'
    maskformer.write_text(f"_base_ = ['{KAT_SEG}']\n"
                          "model = dict(decode_head=dict(type='MaskFormerHead'))\n")
    expect_user_error(run_tool(capsys, 'get_flops', maskformer), 'MaskFormerHead', 'not supported')


def test_unknown_option_exits_2_from_the_command_line():
    result = run_python(osp.join(TOOLS, 'benchmark.py'), KAT_CLS, '--bogus', cwd=REPO, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'unrecognized arguments: --bogus' in result.stderr


# ---------------------------------------------------------------------------------------- benchmark
@pytest.mark.parametrize('config, shape', [(KAT_CLS, (64, 64)), (KAT_SEG, (64, 64)),
                                           (RKAN_DET, (64, 96))])
def test_benchmark_compares_with_the_baseline(capsys, config, shape):
    status, out, err = run_tool(capsys, 'benchmark', config, '--device', 'cpu', '--batch', 2,
                                '--shape', *shape, '--iters', 1, '--warmup', 0, '--repeats', 1,
                                '--compare-baseline')
    assert status == 0, err[-3000:]
    for mode in ('train', 'inference'):
        match = re.search(rf'{mode} throughput ratio model / baseline: ([\d.]+)', out)
        assert match and float(match.group(1)) > 0, out
    assert re.search(r'model \([\d.]+M params\): train [\d.]+ img/s, inference [\d.]+ img/s', out)


def test_benchmark_baseline_of_rkan_is_the_wrapped_resnet(capsys, rkan18_config):
    status, out, err = run_tool(capsys, 'benchmark', rkan18_config, '--batch', 2, '--shape', 64,
                                '--iters', 2, '--warmup', 1, '--repeats', 2, '--compare-baseline',
                                '--device', 'cpu')
    assert status == 0, err[-3000:]
    assert 'baseline (11.690M params)' in out  # ResNet-18 ImageNet classifier
    assert 'median of 2 timed steps after 1 warm-up steps, 2 repeats' in out
    assert re.search(r'train throughput ratio model / baseline: [\d.]+ \(repeats [\d.]+ to [\d.]+, spread '
                     r'[\d.]+%\)', out), out


@pytest.mark.parametrize('rates, warned', [
    # images/s of (model, baseline) in three repeats: a quiet machine, then one whose load changed
    ([(10.0, 20.0), (10.2, 20.0), (9.9, 20.1)], False),
    ([(10.0, 20.0), (36.8, 10.0), (5.6, 10.0)], True),
])
def test_benchmark_repeats_and_says_when_the_spread_makes_the_ratio_meaningless(rates, warned, capsys,
                                                                                 monkeypatch):
    measured = iter(rates * 2)  # training, then inference, for each repeat

    def images_per_second(steps, batch_size, device, warmup, iters):
        model, baseline = next(measured)
        return {'model': model, 'baseline': baseline}

    monkeypatch.setattr('mmrkan.analysis.images_per_second', images_per_second)
    status, out, err = run_tool(capsys, 'benchmark', KAT_CLS, '--device', 'cpu', '--batch', 1, '--shape', 32,
                                '--compare-baseline')
    assert status == 0, err[-3000:]
    ratios = sorted(m / b for m, b in rates)
    assert (f'train throughput ratio model / baseline: {ratios[1]:.3f} (repeats {ratios[0]:.3f} to '
            f'{ratios[2]:.3f}, spread {(ratios[2] - ratios[0]) / ratios[1]:.1%})') in out
    assert ('the machine\'s load changed during the measurement, so this ratio is not meaningful' in err) is warned


def test_benchmark_errors(capsys, tmp_path):
    resnet = tmp_path / 'resnet.py'
    resnet.write_text("_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']\n")
    expect_user_error(
        run_tool(capsys, 'benchmark', resnet, '--batch', 1, '--shape', 64, '--iters', 1,
                 '--compare-baseline'), 'no KAN parts')
    expect_user_error(run_tool(capsys, 'benchmark', KAT_CLS, '--iters', 0), '--iters')
    expect_user_error(run_tool(capsys, 'benchmark', KAT_CLS, '--device', 'tpu'), '--device')
    if not torch.cuda.is_available():
        expect_user_error(run_tool(capsys, 'benchmark', KAT_CLS, '--device', 'cuda'),
                          'no CUDA device')


# ------------------------------------------------------------------------------------ visualize_kan
def test_visualize_kan_writes_pngs_of_a_kat_checkpoint(capsys, tmp_path):
    model = build_task_model(Config.fromfile(KAT_CLS))
    checkpoint = tmp_path / 'kat.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': dict(epoch=1)}, checkpoint)
    status, out, err = run_tool(capsys, 'visualize_kan', checkpoint, '--config', KAT_CLS,
                                '--out-dir', tmp_path / 'plots')
    assert status == 0, err[-3000:]
    assert '8 GroupRational and 0 KANConv2d layers' in out
    pngs = sorted(p.name for p in (tmp_path / 'plots').iterdir())
    assert pngs == sorted(f'rational_backbone.layers.{i}.kan.rational{j}.png'
                          for i in range(4) for j in (1, 2))
    for png in (tmp_path / 'plots').iterdir():
        assert png.read_bytes()[:8] == PNG_MAGIC


def test_visualize_kan_writes_pngs_of_an_rkan_state_dict(capsys, tmp_path, rkan18_config):
    model = build_task_model(Config.fromfile(rkan18_config))
    checkpoint = tmp_path / 'rkan.pth'
    torch.save(model.state_dict(), checkpoint)  # a plain state dict
    status, out, err = run_tool(capsys, 'visualize_kan', checkpoint, '--out-dir', tmp_path)
    assert status == 0, err[-3000:]
    assert '0 GroupRational and 2 KANConv2d layers' in out
    for name in ('kan1', 'kan2'):
        assert (tmp_path / f'kan_conv_backbone.branches.3.{name}.png').read_bytes()[:8] == PNG_MAGIC


def test_visualize_kan_errors(capsys, tmp_path, rkan18_config):
    missing = tmp_path / 'missing.pth'
    expect_user_error(run_tool(capsys, 'visualize_kan', missing), str(missing), 'does not exist')
    no_kan = tmp_path / 'linear.pth'
    torch.save({'state_dict': torch.nn.Linear(2, 2).state_dict()}, no_kan)
    expect_user_error(run_tool(capsys, 'visualize_kan', no_kan), 'no KAN layers')
    kat = tmp_path / 'kat.pth'
    torch.save({'state_dict': build_task_model(Config.fromfile(KAT_CLS)).state_dict()}, kat)
    expect_user_error(run_tool(capsys, 'visualize_kan', kat, '--config', rkan18_config),
                      'does not fit', 'missing', 'unexpected')
    expect_user_error(run_tool(capsys, 'visualize_kan', kat, '--dpi', 3),
                      'unrecognized arguments: --dpi')
