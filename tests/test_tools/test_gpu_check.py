"""The CPU-testable pieces of tools/gpu_check: the torchvision stand-in of mmcv's compiled ops
(against mmcv's real compiled CPU ops), the bundle's requirement check, the stage runner's
records, and the detector run's pass/fail rule."""
import argparse
import importlib.util
import json
import os.path as osp
import sys
import time
import zipfile

import mmcv.ops
import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GPU_CHECK = osp.join(REPO, 'tools', 'gpu_check')


def load(name: str):
    spec = importlib.util.spec_from_file_location(f'gpu_check_{name}',
                                                  osp.join(GPU_CHECK, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building a class
    spec.loader.exec_module(module)
    return module


mmcv_ext = load('mmcv_ext')
# mmcv.ops.nms and mmcv.ops.roi_align are the functions; their modules hold ext_module.
NMS_MODULE = importlib.import_module('mmcv.ops.nms')
ROI_ALIGN_MODULE = importlib.import_module('mmcv.ops.roi_align')
prepare = load('prepare')
run_stages = load('run_stages')
kernel_determinism = load('kernel_determinism')


def random_boxes(count: int, size: float = 40.0) -> torch.Tensor:
    corner = torch.rand(count, 2) * size
    return torch.cat([corner, corner + torch.rand(count, 2) * size / 2 + 0.5], dim=1)


@pytest.mark.parametrize('offset', [0, 1])
def test_nms_matches_mmcv_compiled_op(offset, monkeypatch):
    torch.manual_seed(0)
    boxes, scores = random_boxes(300), torch.rand(300)
    want = mmcv.ops.nms(boxes, scores, 0.4, offset=offset)
    monkeypatch.setattr(NMS_MODULE, 'ext_module', mmcv_ext)
    got = mmcv.ops.nms(boxes, scores, 0.4, offset=offset)
    assert len(want[1]) < 300  # some boxes were suppressed
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_roi_align_matches_mmcv_compiled_op(aligned, sampling_ratio, monkeypatch):
    torch.manual_seed(0)
    features = torch.randn(2, 3, 20, 24)
    # RoIs in input pixels (spatial scale 0.5), some reaching past the feature map's border.
    boxes = random_boxes(9, size=50.0)
    rois = torch.cat([torch.randint(0, 2, (9, 1)).float(), boxes], dim=1)
    grad_out = torch.randn(9, 3, 7, 6)

    def forward_backward():
        x = features.clone().requires_grad_()
        out = mmcv.ops.roi_align(x, rois, (7, 6), 0.5, sampling_ratio, 'avg', aligned)
        out.backward(grad_out)
        return out.detach(), x.grad

    want_out, want_grad = forward_backward()
    monkeypatch.setattr(ROI_ALIGN_MODULE, 'ext_module', mmcv_ext)
    got_out, got_grad = forward_backward()
    assert want_out.abs().sum() > 0
    torch.testing.assert_close(got_out, want_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-6)


def test_stand_in_refuses_what_it_does_not_provide(monkeypatch):
    with pytest.raises(NotImplementedError, match="mmcv op 'deform_conv_forward' is not compiled"):
        mmcv_ext.deform_conv_forward(torch.zeros(1))
    monkeypatch.setattr(ROI_ALIGN_MODULE, 'ext_module', mmcv_ext)
    with pytest.raises(NotImplementedError, match='pool_mode=0'):
        mmcv.ops.roi_align(torch.randn(1, 1, 4, 4), torch.tensor([[0., 0., 0., 2., 2.]]), 2, 1.0,
                           0, 'max', True)
    with pytest.raises(ValueError, match='offset=2'):
        mmcv_ext.nms(random_boxes(3), torch.rand(3), 0.5, 2)


def fake_wheel(directory, name: str, version: str, requires=()) -> str:
    path = osp.join(str(directory), f'{name}-{version}-py3-none-any.whl')
    metadata = f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n' + ''.join(
        f'Requires-Dist: {requirement}\n' for requirement in requires)
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr(f'{name}-{version}.dist-info/METADATA', metadata)
    return path


def test_unmet_requirements_names_what_is_missing(tmp_path):
    machine = {'numpy': '2.5.2', 'opencv-python-headless': None, 'torch': '2.11.0'}
    wheels = [
        fake_wheel(tmp_path, 'alpha', '1.0', ['numpy>=1.26', 'opencv-python>=3', 'beta',
                                               'tomli; python_version < "3.11"',
                                               'pytest; extra == "tests"']),
        fake_wheel(tmp_path, 'beta', '2.0', ['torch>=2.4']),
    ]
    assert prepare.unmet_requirements(wheels, machine) == []
    wheels.append(fake_wheel(tmp_path, 'gamma', '0.1', ['numpy<2', 'missing-package', 'beta>2']))
    unmet = prepare.unmet_requirements(wheels, machine)
    assert len(unmet) == 3, unmet
    assert 'gamma-0.1-py3-none-any.whl needs numpy<2, but numpy 2.5.2' in unmet[0]
    assert 'needs missing-package: neither in bundle.txt nor on the GPU machine' in unmet[1]
    assert 'needs beta>2, but beta 2.0' in unmet[2]


def test_bundle_pins_are_exact_and_known_to_the_requirement_check():
    pins = prepare.read_pins(osp.join(GPU_CHECK, 'bundle.txt'))
    assert all(version for version in pins.values()), pins
    machine = prepare.read_pins(osp.join(GPU_CHECK, 'gpu_machine_packages.txt'))
    assert machine['torch'] == '2.11.0' and 'opencv-python-headless' in machine
    assert not set(pins) & set(machine), 'a bundled package would shadow the machine\'s own'


def stage_args(tmp_path, mode='rehearse', budget=0):
    return argparse.Namespace(mode=mode, work=str(tmp_path), tree=str(tmp_path), out=str(tmp_path),
                              site=str(tmp_path / 'site'), budget=budget, bundle_check='',
                              sanitizer='compute-sanitizer')


def python_stage(name, code, **kwargs):
    return run_stages.Stage(name, lambda args: [sys.executable, '-c', code],
                            limit=dict(gpu=30, rehearse=30), **kwargs)


def test_stages_record_failures_timeouts_and_skips(tmp_path, capsys):
    args = stage_args(tmp_path)
    recorder = run_stages.Recorder(args)
    results = {}
    stages = [
        python_stage('fails', 'import sys; print("broken"); sys.exit(3)'),
        python_stage('after_failure', 'print("{\\"value\\": 1}")',
                     figures=lambda output, args: run_stages.last_json_line(output)),
        python_stage('needs_failed', 'pass', needs=['fails']),
        python_stage('gpu_only', 'print("stand-in ran")', gpu_only=True),
        run_stages.Stage('slow', lambda args: [sys.executable, '-c', 'import time; time.sleep(120)'],
                         limit=dict(gpu=1, rehearse=1)),
    ]
    start = time.time()
    for stage in stages:
        result = run_stages.run_stage(stage, args, results, recorder, deadline=time.time() + 100)
        results[stage.name] = result['status']
        recorder.add(result)
        saved = json.load(open(osp.join(str(tmp_path), 'gpu_check.json')))
        assert saved['stages'][-1]['name'] == stage.name  # written as each stage finishes
    assert time.time() - start < 90  # the sleeping stage was killed at its 1 s limit
    by_name = {r['name']: r for r in saved['stages']}
    assert by_name['fails']['status'] == 'failed' and 'exit code 3' in by_name['fails']['reason']
    assert 'broken' in by_name['fails']['output_tail']
    assert by_name['after_failure'] == dict(by_name['after_failure'], status='passed',
                                            figures={'value': 1})
    assert by_name['needs_failed']['status'] == 'skipped'
    assert 'needs fails' in by_name['needs_failed']['reason']
    assert by_name['gpu_only']['status'] == 'skipped'
    assert by_name['gpu_only']['cpu_stand_in']['status'] == 'passed'
    assert by_name['slow']['status'] == 'failed' and 'timed out' in by_name['slow']['reason']
    log = open(osp.join(str(tmp_path), 'gpu_check.log')).read()
    assert 'broken' in log and 'stand-in ran' in log

    run_stages.print_table(recorder)
    table = capsys.readouterr().out.strip().splitlines()[-len(stages):]
    assert [line.split()[0] for line in table] == [stage.name for stage in stages]


def test_stage_is_skipped_when_the_budget_is_spent(tmp_path):
    args = stage_args(tmp_path, mode='gpu', budget=5)
    recorder = run_stages.Recorder(args)
    result = run_stages.run_stage(python_stage('late', 'pass'), args, {}, recorder,
                                  deadline=time.time() + 5)
    assert result['status'] == 'skipped' and 'time budget' in result['reason']


def test_every_stage_has_a_gpu_command_and_limits(tmp_path):
    names = [stage.name for stage in run_stages.STAGES]
    assert len(set(names)) == len(names)
    gpu = stage_args(tmp_path, mode='gpu')
    for stage in run_stages.STAGES:
        assert set(stage.limit) == {'gpu', 'rehearse'}, stage.name
        assert set(stage.needs) <= set(names[:names.index(stage.name)]), stage.name
        if stage.name not in ('install', 'bundle_resolves_cp312'):
            assert stage.command(gpu), stage.name


def test_detector_run_rule():
    train_detector = load('train_detector')
    falling = [3.0, 2.9, 2.5, 2.4, 2.2, 2.0, 1.9, 1.8]
    assert train_detector.summarize(falling, skipped=[0, 1], require_falling=True)['passed']
    late_skip = train_detector.summarize(falling, skipped=[5], require_falling=True)
    assert not late_skip['passed'] and late_skip['late_skipped_steps'] == [5]
    flat = train_detector.summarize([2.0] * 8, skipped=[], require_falling=True)
    assert not flat['passed'] and 'not falling' in flat['problems'][0]
    assert train_detector.summarize([2.0] * 8, skipped=[], require_falling=False)['passed']
    nan = train_detector.summarize([2.0, float('nan')] + [1.0] * 6, [], require_falling=False)
    assert not nan['passed'] and not nan['finite']


def test_kernel_determinism_reports_identity_and_differences(monkeypatch, capsys):
    """The determinism stage's CPU stand-in on one small case of each op: identical bits under
    its conditions, and a condition that changes one gradient by an ulp is reported."""
    monkeypatch.setattr(kernel_determinism, 'CASES', [
        ('kan_conv2d', (16, 3, 9, 7), dict(stride=2, functions=4)),
        ('group_rational', (16 * 5, 16), dict(groups=2))])
    monkeypatch.setattr(kernel_determinism, 'DTYPES', {'fp32': torch.float32})
    assert kernel_determinism.main(['--device', 'cpu']) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report == dict(device='cpu', conditions=['1 thread', '2 threads'], runs=4,
                          bitwise_identical=True, differing=0)

    honest = kernel_determinism.conditions

    def with_a_perturbed_run(device):
        runs = honest(device)

        def perturbed(call):
            out = call()
            out[-1] = torch.nextafter(out[-1], out[-1] + 1)
            return out
        return dict(runs, perturbed=perturbed)

    monkeypatch.setattr(kernel_determinism, 'conditions', with_a_perturbed_run)
    assert kernel_determinism.main(['--device', 'cpu']) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert not report['bitwise_identical'] and report['differing'] == 2
    assert 'output 3 perturbed vs 1 thread' in captured.err
