"""Training stability of one or more runs, the RKAN paper's Table 3 metric: the coefficient of
variation (population std / mean) of the validation accuracy over the last 50, 100 and 200
epochs, read from mmengine's scalars (<work_dir>/<timestamp>/vis_data/scalars.json); optionally a
PNG of the accuracy curves of all runs.

Examples::

    python tools/analysis_tools/accuracy_cv.py work_dirs/resnet-101_8xb16_cifar100-128px \\
        work_dirs/rkanet-101_8xb16_cifar100-128px --plot work_dirs/cifar100_curves.png
    python tools/analysis_tools/accuracy_cv.py work_dirs/a work_dirs/b --windows 20 50 \\
        --metric accuracy/top5 --labels ResNet RKANet

A run can also be given as one of its timestamp folders or as a scalars.json file.
"""
import argparse
import os.path as osp

from mmrkan.analysis.accuracy_cv import last_window_cv, plot_curves, read_curve
from mmrkan.apis import ToolError, exit_on_user_error


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', nargs='+', metavar='WORK_DIR', help='work dirs of the runs to compare')
    parser.add_argument('--metric', default='accuracy/top1', help='validation metric (default: accuracy/top1)')
    parser.add_argument('--windows', type=int, nargs='+', default=[50, 100, 200], metavar='N',
                        help='numbers of last evaluations the CV is computed over (default: 50 100 200)')
    parser.add_argument('--labels', nargs='+', help='a name per run for the table and the plot '
                        '(default: the work dir names)')
    parser.add_argument('--plot', metavar='PNG', help='write the accuracy curves of all runs to this PNG file')
    args = parser.parse_args()
    if args.labels is not None and len(args.labels) != len(args.runs):
        parser.error(f'--labels: {len(args.labels)} names for {len(args.runs)} runs')
    for window in args.windows:
        if window < 2:
            parser.error(f'--windows: {window} evaluations; a coefficient of variation needs at least 2')
    if args.plot is not None and not args.plot.lower().endswith('.png'):
        parser.error(f'--plot: {args.plot} must be a .png file')
    if args.plot is not None and not osp.isdir(osp.dirname(osp.abspath(args.plot))):
        parser.error(f'--plot: the folder of {args.plot} does not exist')
    return args


@exit_on_user_error
def main() -> None:
    args = parse_args()
    labels = args.labels or [osp.basename(osp.normpath(run)) for run in args.runs]
    curves = {}
    for label, run in zip(labels, args.runs):
        if not osp.exists(run):
            raise ToolError(f'{run} does not exist')
        try:
            curves[label] = read_curve(run, args.metric)
        except ValueError as error:
            raise ToolError(str(error)) from None

    width = max(len(label) for label in labels)
    header = [f'{"run":<{width}}', 'evals', ' best', ' last'] + [f'CV last {n}' for n in args.windows]
    print(f'{args.metric}; CV = std / mean (population std) of the last N evaluations')
    print('  '.join(header))
    for label, curve in curves.items():
        values = list(curve.values())
        cells = [f'{label:<{width}}', f'{len(values):>5}', f'{max(values):5.2f}', f'{values[-1]:5.2f}']
        for window, title in zip(args.windows, header[4:]):
            cv = last_window_cv(curve, window)
            cells.append(f'{cv:.4f}'.rjust(len(title)) if cv is not None else 'n/a'.rjust(len(title)))
        print('  '.join(cells))
    short = sorted({n for n in args.windows for curve in curves.values() if len(curve) < n})
    if short:
        print(f'n/a: the run has fewer evaluations than {", ".join(map(str, short))}')
    if args.plot:
        plot_curves(curves, args.plot, args.metric, args.windows)
        print(f'curves written to {args.plot}')


if __name__ == '__main__':
    main()
