"""tools/analysis_tools/accuracy_cv.py on scalars files written as mmengine writes them: the CV
of the last 50 / 100 / 200 evaluations checked against values worked out by hand, resumed runs,
the curves PNG, and the user errors."""
import json
import math
import os
import os.path as osp
import re

import pytest

from mmrkan.analysis.accuracy_cv import coefficient_of_variation, last_window_cv, read_curve
from mmrkan.testing.tools import run_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'accuracy_cv.py')
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
ITERS_PER_EPOCH = 3


def write_run(work_dir, timestamp: str, accuracies: dict) -> None:
    """A timestamp folder of ``work_dir`` with the lines mmengine's LocalVisBackend appends:
    training lines (``step`` = iteration) and one validation line per epoch (``step`` = epoch)."""
    folder = osp.join(work_dir, timestamp, 'vis_data')
    os.makedirs(folder, exist_ok=True)
    with open(osp.join(folder, 'scalars.json'), 'a') as f:
        for epoch, accuracy in accuracies.items():
            iteration = epoch * ITERS_PER_EPOCH
            f.write(json.dumps(dict(lr=0.05, loss=1.5, time=0.1, epoch=epoch, iter=iteration, step=iteration)) + '\n')
            f.write(json.dumps({'accuracy/top1': accuracy, 'accuracy/top5': 99.0, 'data_time': 0.01,
                                'time': 0.02, 'step': epoch}) + '\n')


def paper_like_curve() -> dict:
    """200 epochs: a ramp to 50, then 50 flat epochs, then the last 50 alternating 40 and 60."""
    curve = {epoch: 30 + 0.2 * epoch for epoch in range(1, 101)}
    curve.update({epoch: 50.0 for epoch in range(101, 151)})
    curve.update({epoch: 40.0 if epoch % 2 else 60.0 for epoch in range(151, 201)})
    return curve


@pytest.fixture
def stable_run(tmp_path) -> str:
    """The 200 epochs of ``paper_like_curve`` in two timestamp folders: the run was resumed at
    epoch 141 after its first part had already logged epochs 141-150 (with other values)."""
    work_dir = str(tmp_path / 'rkanet')
    curve = paper_like_curve()
    first = {epoch: value for epoch, value in curve.items() if epoch <= 150}
    first.update({epoch: 0.0 for epoch in range(141, 151)})  # replaced by the resumed run
    write_run(work_dir, '20261201_101010', first)
    write_run(work_dir, '20261202_090000', {epoch: value for epoch, value in curve.items() if epoch >= 141})
    return work_dir


def test_cv_of_the_last_windows_by_hand(stable_run):
    curve = read_curve(stable_run)
    assert list(curve) == list(range(1, 201))
    # Last 50: 40 and 60 alternating: mean 50, population std 10.
    assert last_window_cv(curve, 50) == pytest.approx(10 / 50)
    # Last 100: fifty 50s and the fifty above: mean 50, variance (50 * 0 + 50 * 100) / 100 = 50.
    assert last_window_cv(curve, 100) == pytest.approx(math.sqrt(50) / 50)
    # Last 200: the definition, in plain Python.
    values = list(paper_like_curve().values())
    mean = sum(values) / 200
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 200)
    assert last_window_cv(curve, 200) == pytest.approx(std / mean)
    assert last_window_cv(curve, 201) is None


def test_coefficient_of_variation_errors():
    assert coefficient_of_variation([2.0, 2.0]) == 0
    with pytest.raises(ValueError, match='no values'):
        coefficient_of_variation([])
    with pytest.raises(ValueError, match='mean of 0'):
        coefficient_of_variation([0.0, 0.0])
    with pytest.raises(ValueError, match='window=1'):
        last_window_cv({1: 1.0}, 1)


def test_tool_prints_the_table_and_plots_the_curves(capsys, stable_run, tmp_path):
    short = str(tmp_path / 'resnet')
    write_run(short, '20261203_000000', {epoch: 40.0 + epoch % 3 for epoch in range(1, 61)})
    png = tmp_path / 'curves.png'
    status, out, err = run_script(capsys, TOOL, stable_run, short, '--plot', png, '--labels', 'RKANet', 'ResNet')
    assert status == 0, err[-2000:]
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(('RKANet', 'ResNet'))}
    cv_200 = last_window_cv(read_curve(stable_run), 200)
    assert rows['RKANet'] == ['200', '60.00', '60.00', '0.2000', '0.1414', f'{cv_200:.4f}']
    assert rows['ResNet'][:4] == ['60', '42.00', '40.00', f'{last_window_cv(read_curve(short), 50):.4f}']
    assert rows['ResNet'][4:] == ['n/a', 'n/a']
    assert 'fewer evaluations than 100, 200' in out
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_tool_reads_a_timestamp_folder_or_a_scalars_file_and_other_metrics(capsys, stable_run):
    folder = osp.join(stable_run, '20261201_101010')
    status, out, err = run_script(capsys, TOOL, folder, '--windows', '10', '--metric', 'accuracy/top5')
    assert status == 0, err[-2000:]
    assert re.search(r'20261201_101010\s+150\s+99\.00\s+99\.00\s+0\.0000', out), out
    scalars = osp.join(folder, 'vis_data', 'scalars.json')
    status, out, err = run_script(capsys, TOOL, scalars, '--windows', '50')
    assert status == 0, err[-2000:]
    assert 'scalars.json' in out and ' 150 ' in out


def expect_user_error(result, *fragments: str) -> None:
    status, _, err = result
    assert status == 2, (status, err[-2000:])
    for fragment in fragments:
        assert fragment in err, err[-2000:]


def test_tool_errors(capsys, stable_run, tmp_path):
    expect_user_error(run_script(capsys, TOOL, tmp_path / 'none'), 'does not exist')
    (tmp_path / 'empty').mkdir()
    expect_user_error(run_script(capsys, TOOL, tmp_path / 'empty'), 'no vis_data/scalars.json')
    expect_user_error(run_script(capsys, TOOL, stable_run, '--metric', 'mAP'),
                      "no 'mAP'", 'accuracy/top1', 'accuracy/top5')
    expect_user_error(run_script(capsys, TOOL, stable_run, '--labels', 'a', 'b'), '--labels: 2 names for 1 runs')
    expect_user_error(run_script(capsys, TOOL, stable_run, '--windows', '1'), 'at least 2')
    expect_user_error(run_script(capsys, TOOL, stable_run, '--plot', tmp_path / 'curves.jpg'), '.png')
    expect_user_error(run_script(capsys, TOOL, stable_run, '--plot', tmp_path / 'no' / 'c.png'), 'does not exist')
    broken = tmp_path / 'broken' / '20261201_000000' / 'vis_data'
    broken.mkdir(parents=True)
    (broken / 'scalars.json').write_text('{"step": 1, "accuracy/top1": 5}\n{not json\n')
    expect_user_error(run_script(capsys, TOOL, tmp_path / 'broken'), 'line 2: not JSON')
