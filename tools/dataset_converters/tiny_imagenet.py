"""Annotation lists for Tiny ImageNet, read by mmpretrain's CustomDataset (configs/rkan/*tiny-imagenet*).

The official archive (tiny-imagenet-200.zip) keeps its training images in class folders
(``train/<wnid>/images/*.JPEG``) but its validation images in one flat folder (``val/images``),
their classes listed in ``val/val_annotations.txt``. This tool writes, inside the dataset folder:

    meta/train.txt    train/<wnid>/images/<name>.JPEG <label>
    meta/val.txt      val/images/<name>.JPEG <label>
    meta/classes.txt  the wnids, line i holding class i

with label i the i-th wnid in sorted order (the order of torchvision's ImageFolder, which the
RKAN authors read the dataset with). Nothing is moved or changed: only ``meta/`` is written, each
file atomically. Existing lists are left alone when they are up to date; different ones are only
replaced with ``--overwrite``. The unlabelled ``test`` split is not listed.

    python tools/dataset_converters/tiny_imagenet.py data/tiny-imagenet-200
"""
import argparse
import os
import os.path as osp
import tempfile
from typing import Dict, List

from mmrkan.apis import ToolError, exit_on_user_error

IMAGE_EXTENSIONS = ('.jpeg', '.jpg', '.png')


def _read_lines(path: str) -> List[str]:
    if not osp.isfile(path):
        raise ToolError(f'{path} does not exist: is the folder the official tiny-imagenet-200 layout?')
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def list_train(root: str, label_of: Dict[str, int]) -> List[str]:
    """``train/<wnid>/images/<name> <label>`` for every training image, by class then name."""
    lines = []
    for wnid in sorted(label_of):
        folder = osp.join(root, 'train', wnid, 'images')
        if not osp.isdir(folder):
            raise ToolError(f'{folder} does not exist: wnids.txt lists {wnid} but it has no training images')
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise ToolError(f'{folder} holds no images')
        lines += [f'train/{wnid}/images/{name} {label_of[wnid]}' for name in names]
    return lines


def list_val(root: str, label_of: Dict[str, int]) -> List[str]:
    """``val/images/<name> <label>`` for every line of val/val_annotations.txt, in its order."""
    annotations = osp.join(root, 'val', 'val_annotations.txt')
    lines = []
    for number, line in enumerate(_read_lines(annotations), start=1):
        fields = line.split('\t')
        if len(fields) < 2:
            raise ToolError(f'{annotations}, line {number}: expected "<image>\\t<wnid>\\t<box>", got {line!r}')
        name, wnid = fields[0], fields[1]
        if wnid not in label_of:
            raise ToolError(f'{annotations}, line {number}: {wnid} is not in wnids.txt')
        if not osp.isfile(osp.join(root, 'val', 'images', name)):
            raise ToolError(f'{annotations}, line {number}: val/images/{name} does not exist')
        lines.append(f'val/images/{name} {label_of[wnid]}')
    if not lines:
        raise ToolError(f'{annotations} lists no images')
    return lines


def _write_atomically(path: str, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=osp.dirname(path), prefix='.' + osp.basename(path))
    try:
        with os.fdopen(handle, 'w') as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def convert(root: str, overwrite: bool = False) -> Dict[str, int]:
    """Write ``root/meta/{train,val,classes}.txt``; return the number of lines of each.

    Everything is read and checked before anything is written.
    """
    if not osp.isdir(root):
        raise ToolError(f'{root} is not a folder')
    wnids = _read_lines(osp.join(root, 'wnids.txt'))
    if len(set(wnids)) != len(wnids):
        raise ToolError(f'{osp.join(root, "wnids.txt")} lists a wnid twice')
    label_of = {wnid: label for label, wnid in enumerate(sorted(wnids))}
    contents = dict(train=list_train(root, label_of), val=list_val(root, label_of), classes=sorted(wnids))

    meta = osp.join(root, 'meta')
    texts = {name: '\n'.join(lines) + '\n' for name, lines in contents.items()}
    for name, text in texts.items():
        path = osp.join(meta, f'{name}.txt')
        if osp.exists(path) and not overwrite:
            with open(path) as f:
                if f.read() != text:
                    raise ToolError(f'{path} exists and differs from the list this tool writes; '
                                    'pass --overwrite to replace it')
    os.makedirs(meta, exist_ok=True)
    for name, text in texts.items():
        _write_atomically(osp.join(meta, f'{name}.txt'), text)
    return {name: len(lines) for name, lines in contents.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('root', help='the tiny-imagenet-200 folder of the official archive')
    parser.add_argument('--overwrite', action='store_true', help='replace meta/*.txt lists that differ')
    return parser.parse_args()


@exit_on_user_error
def main() -> None:
    args = parse_args()
    counts = convert(args.root, args.overwrite)
    print(f'{args.root}/meta: {counts["classes"]} classes, {counts["train"]} training and '
          f'{counts["val"]} validation images listed (train.txt, val.txt, classes.txt)')


if __name__ == '__main__':
    main()
