"""Check the datasets of a config before a run: the checks tools/train.py and tools/test.py make
(annotations load, every image and label map they name exists, the config's classes are the
data's), listing every bad file; with ``--decode`` also decode every image and label map as the
pipeline would (progress bar) and check the label maps' values.

    python tools/misc/check_dataset.py configs/demo/mask-rcnn_rkanet-18-tiny_fpn_shapes-coco.py --decode
    python tools/misc/check_dataset.py CONFIG --data-root data/my_coco --decode --workers 8

Exit status: 0 when every dataset is fine, 1 when files are bad (one line each on stderr),
2 for a problem with the config or the annotations (one ``error:`` line).
"""
import argparse
import os
import sys

from mmengine.config import DictAction

from mmrkan.apis import ToolError, decode_problems, enable_debug, exit_on_user_error, load_config
from mmrkan.apis.data_checks import DATALOADERS, describe_dataset, load_datasets, missing_files


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file of a detector, segmentor or classifier')
    parser.add_argument('--decode', action='store_true',
                        help='also decode every image and label map (slow: reads the whole dataset)')
    parser.add_argument('--workers', type=int, default=1, help='processes that decode (with --decode)')
    parser.add_argument('--data-root', metavar='DIR', help='read the dataset from DIR, as tools/train.py does')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    parser.add_argument('--debug', action='store_true', help='show the traceback of errors')
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f'--workers must be at least 1, got {args.workers}')
    if args.debug:
        enable_debug()
    return args


@exit_on_user_error
def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.data_root)
    loaders = [name for name in DATALOADERS if cfg.get(name) is not None]
    if not loaders:
        raise ToolError(f'{args.config} has no dataloader')
    bad = []
    for path, dataset in load_datasets(cfg, loaders, check_files=False):
        info = describe_dataset(path, dataset)
        print(f'{path}: {info["type"]}, {info["samples"]} samples from its {info["source"]}, '
              f'{len(info["classes"])} classes')
        missing, _ = missing_files(dataset)
        bad += [f'{file}: does not exist' for file in missing]
        if args.decode:
            present = set(missing)
            bad += [problem for problem in decode_problems(dataset, args.workers)
                    if problem.split(': ', 1)[0] not in present]
    if bad:
        for line in bad:
            print(line, file=sys.stderr)
        print(f'{len(bad)} bad files (working directory {os.getcwd()})', file=sys.stderr)
        sys.exit(1)
    print('every image and label map exists and decodes' if args.decode else
          'every image and label map exists (--decode also decodes them)')


if __name__ == '__main__':
    main()
