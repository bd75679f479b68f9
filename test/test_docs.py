"""The documentation's relative links lead somewhere: every linked file exists, and every
``#anchor`` names a heading of its page (GitHub's heading ids)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / 'README.md', *ROOT.glob('docs/*.md'), *ROOT.glob('models/*.md')])
LINK = re.compile(r'\]\(([^)\s]+)\)')
HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*$')


def heading_ids(markdown: str) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces as
    hyphens, ``-1``, ``-2``... after a repeated one."""
    ids, seen = set(), {}
    for line in strip_code(markdown).splitlines():
        match = HEADING.match(line)
        if not match:
            continue
        slug = re.sub(r'[^\w\- ]', '', match.group(1).lower()).replace(' ', '-')
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f'{slug}-{count}')
    return ids


@cache
def page_heading_ids(path: Path) -> frozenset[str]:
    """A page's heading ids, read once however many links point into it."""
    return frozenset(heading_ids(path.read_text(encoding='utf-8')))


def strip_code(markdown: str) -> str:
    """Without fenced blocks and inline code, where brackets and hashes are not Markdown."""
    markdown = re.sub(r'^```.*?^```', '', markdown, flags=re.S | re.M)
    return re.sub(r'`[^`\n]*`', '', markdown)


def broken_links(page: Path) -> list[str]:
    broken = []
    for link in LINK.findall(strip_code(page.read_text(encoding='utf-8'))):
        if re.match(r'[a-z][a-z0-9+.-]*:', link):  # https:, mailto:, ...
            continue
        target, _, anchor = link.partition('#')
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f'{link}: no file {target}')
        elif anchor and path.suffix == '.md' and anchor not in page_heading_ids(path):
            broken.append(f'{link}: no heading with id {anchor!r} in {path.name}')
    return broken


def test_heading_ids_follow_github():
    page = ('# Robustness to missing modalities\n'
            '### Test split, mean of seeds 0, 1: mIoU (%) per available subset\n'
            '## Seed 0: from scratch 1000 steps × 16\n'
            '## Runs\n## Runs\n'
            '```\n# not a heading\n```\n')
    assert heading_ids(page) == {
        'robustness-to-missing-modalities',
        'test-split-mean-of-seeds-0-1-miou--per-available-subset',
        'seed-0-from-scratch-1000-steps--16',
        'runs', 'runs-1',
    }


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / 'other.md').write_text('# Other page\n')
    page = tmp_path / 'page.md'
    page.write_text('# Page\n[ok](other.md#other-page) [self](#page) [web](https://example.org)\n'
                    '[gone](missing.md) [anchor](other.md#nowhere) `[code](not/a/link.md)`\n')
    assert [b.split(':')[0] for b in broken_links(page)] == ['missing.md', 'other.md#nowhere']


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []
