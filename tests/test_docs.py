"""The repository is self-contained: no file points outside it, the docs' links resolve, and the
project carries its licence."""
import os.path as osp
import re
import subprocess
from typing import Dict, List, Optional, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# A run of "../" steps and the path after it, e.g. '../_base_/x.py' or '../../notes/y.md'; not
# the end of an ellipsis ('work_dirs/.../epoch_12.pth').
PARENT_PATH = re.compile(r'(?<![\w.])(?:\.\./)+[\w.\-/]*')
# A Markdown file named anywhere in a text, e.g. 'docs/ops.md' in a docstring.
MARKDOWN_NAME = re.compile(r'[\w.\-/]*[\w\-]\.md\b')
URL = re.compile(r'[a-z][a-z0-9+.-]*://\S+')
# Inline Markdown links and images: [text](target) or [text](target "title").
MARKDOWN_LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
HEADING = re.compile(r'^(#{1,6})\s+(.+?)\s*#*\s*$')


def tracked_files() -> List[str]:
    if not osp.exists(osp.join(REPO, '.git')):  # a directory, or a file in a git worktree
        pytest.skip('not a git checkout: the tracked files are unknown')
    out = subprocess.run(['git', 'ls-files', '-z'], cwd=REPO, check=True, capture_output=True)
    return [path for path in out.stdout.decode().split('\0') if path]


def read_text(path: str) -> Optional[str]:
    """The file's text, or None for binary files (NUL bytes or not UTF-8)."""
    with open(osp.join(REPO, path), 'rb') as f:
        data = f.read()
    if b'\0' in data:
        return None
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        return None


def text_files() -> Dict[str, str]:
    """The text of every tracked file that is not binary."""
    texts = {}
    for path in tracked_files():
        # A tracked file deleted in the working tree is not there to refer to anything.
        if osp.isfile(osp.join(REPO, path)):
            text = read_text(path)
            if text is not None:
                texts[path] = text
    return texts


def is_inside_repo(path: str) -> bool:
    return osp.commonpath([REPO, osp.normpath(path)]) == REPO


def line_of(text: str, offset: int) -> int:
    return text.count('\n', 0, offset) + 1


def outside_references(path: str, text: str, tracked: set) -> List[str]:
    """``path:line: reference`` for each path in ``text`` that leads out of the repository or
    names a Markdown file the repository does not have."""
    found = []
    folder = osp.join(REPO, osp.dirname(path))
    # URLs name other sites' files; blank them out, keeping the offsets for the line numbers.
    text = URL.sub(lambda match: ' ' * len(match.group(0)), text)

    def report(offset: int, reference: str) -> None:
        entry = f'{path}:{line_of(text, offset)}: {reference}'
        if entry not in found:
            found.append(entry)

    for match in PARENT_PATH.finditer(text):
        if not is_inside_repo(osp.join(folder, match.group(0))):
            report(match.start(), match.group(0))
    tracked_names = {osp.basename(name) for name in tracked}
    for match in MARKDOWN_NAME.finditer(text):
        name = match.group(0)
        if '/' not in name:
            # A bare file name ('RESULTS.md') may name a tracked file in any folder.
            exists = name in tracked_names
        else:
            candidates = (osp.join(folder, name), osp.join(REPO, name.lstrip('/')))
            exists = any(is_inside_repo(c) and osp.relpath(c, REPO) in tracked
                         for c in candidates)
        if not exists:
            report(match.start(), name)
    return found


def test_no_tracked_file_refers_to_a_path_outside_the_repository():
    texts = text_files()
    assert 'README.md' in texts, 'README.md is not tracked'
    this_file = osp.relpath(osp.abspath(__file__), REPO)
    # This file's own examples of bad references are deliberate.
    found = [ref for path, text in sorted(texts.items()) if path != this_file
             for ref in outside_references(path, text, set(texts))]
    assert not found, 'references to files outside the repository:\n' + '\n'.join(found)


def test_the_reference_scan_catches_outside_paths():
    tracked = {'README.md', 'docs/ops.md', 'benchmarks/RESULTS.md'}
    inside = ("_base_ = '../_base_/x.py'  # see docs/ops.md and RESULTS.md\n"
              '#include "../kan_ops.h"\n')
    assert outside_references('configs/kat/a.py', inside, tracked) == []
    # An ellipsis in a top-level file is no step out of the repository.
    assert outside_references('README.md', 'work_dirs/.../epoch_1.pth', tracked) == []
    assert outside_references('README.md', 'https://example.org/a/../../notes.md', tracked) == []
    outside = 'see ../../notes/spec.md\nand spec-notes.md\nand docs/missing.md\n'
    assert outside_references('configs/kat/a.py', outside, tracked) == [
        'configs/kat/a.py:1: ../../notes/spec.md',
        'configs/kat/a.py:2: spec-notes.md',
        'configs/kat/a.py:3: docs/missing.md',
    ]


def heading_anchors(text: str) -> set:
    """GitHub's anchors for the headings of a Markdown text (duplicates get -1, -2, ...)."""
    anchors, seen = set(), {}
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith('```'):
            in_code = not in_code
            continue
        match = None if in_code else HEADING.match(line)
        if match:
            slug = re.sub(r'[^\w\- ]', '', match.group(2).strip().lower()).replace(' ', '-')
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f'{slug}-{count}')
    return anchors


def markdown_links(text: str) -> List[Tuple[int, str]]:
    """``(line, target)`` of the inline links outside fenced code blocks."""
    links, in_code = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith('```'):
            in_code = not in_code
        elif not in_code:
            # Inline code spans are examples, not links.
            links += [(number, m.group(1)) for m in MARKDOWN_LINK.finditer(
                re.sub(r'`[^`]*`', '', line))]
    return links


def broken_links(path: str, text: str) -> List[str]:
    """``path:line: target (why)`` for each relative link of ``text`` (the Markdown file
    ``path``) whose file or heading does not exist."""
    broken = []
    for number, target in markdown_links(text):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition('#')
        if not file_part:  # a heading of this file
            if anchor not in heading_anchors(text):
                broken.append(f'{path}:{number}: {target} (no heading #{anchor})')
            continue
        resolved = osp.normpath(osp.join(REPO, osp.dirname(path), file_part))
        if not is_inside_repo(resolved) or not osp.exists(resolved):
            broken.append(f'{path}:{number}: {target} (no such file)')
        elif anchor and resolved.endswith('.md'):
            with open(resolved, encoding='utf-8') as f:
                if anchor not in heading_anchors(f.read()):
                    broken.append(f'{path}:{number}: {target} (no heading #{anchor})')
    return broken


def documentation_files() -> List[str]:
    docs = sorted(p for p in tracked_files() if re.fullmatch(r'docs/[^/]+\.md', p))
    return ['README.md'] + docs


def test_docs_exist():
    docs = documentation_files()
    for name in ('ops', 'models', 'conventions', 'recipes', 'checkpoints', 'credits'):
        assert f'docs/{name}.md' in docs


def test_every_relative_markdown_link_resolves():
    broken = []
    for path in documentation_files():
        broken += broken_links(path, read_text(path))
    assert not broken, 'broken links:\n' + '\n'.join(broken)


def test_the_link_check_catches_broken_links():
    text = ('# Maths of the ops\n\n[self](README.md) [web](https://example.org/x.md) '
            '[here](#maths-of-the-ops)\n[gone](docs/gone.md) [bad](#no-such-heading)\n'
            '`[code](not/a/link.md)`\n')
    assert broken_links('README.md', text) == [
        'README.md:4: docs/gone.md (no such file)',
        'README.md:4: #no-such-heading (no heading #no-such-heading)',
    ]


def test_heading_anchors_follow_github():
    text = '# The `s(0) = +1` sign\n## KAT-S / KAT-B\n## KAT-S / KAT-B\n```\n# not a heading\n```\n'
    assert heading_anchors(text) == {'the-s0--1-sign', 'kat-s--kat-b', 'kat-s--kat-b-1'}


def test_license_is_apache_2():
    with open(osp.join(REPO, 'LICENSE'), encoding='utf-8') as f:
        text = f.read()
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text
    # The full text, not a pointer to it: the definitions through the end of the terms.
    for part in ('TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION',
                 '1. Definitions.', '9. Accepting Warranty or Additional Liability.',
                 'END OF TERMS AND CONDITIONS'):
        assert part in text, part
    assert 'mmrkan contributors' in text
    assert 'LICENSE' in tracked_files()
