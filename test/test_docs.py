"""The documentation's relative links lead somewhere: every linked file exists, and every
``#anchor`` names a heading of its page (GitHub's heading ids). Every ``mmp_ros COMMAND
--option`` quoted in code is a command of the CLI and an option of that command, and every
``sensors.<modality>.<name>`` a parameter of the node."""

from __future__ import annotations

import argparse
import difflib
import re
from functools import cache
from pathlib import Path

import pytest
from conftest import needs_importable

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / 'README.md', *ROOT.glob('docs/*.md'), *ROOT.glob('models/*.md')])
LINK = re.compile(r'\]\(([^)\s]+)\)')
HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*$')


def heading_ids(markdown: str) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped (the backticks
    of inline code too, not its text), spaces as hyphens, ``-1``, ``-2``... after a repeated
    one."""
    ids, seen = set(), {}
    for line in strip_code(markdown, inline=False).splitlines():
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


def strip_code(markdown: str, *, inline: bool = True) -> str:
    """Without fenced blocks and (``inline``) inline code, where brackets and hashes are not
    Markdown."""
    markdown = re.sub(r'^```.*?^```', '', markdown, flags=re.S | re.M)
    return re.sub(r'`[^`\n]*`', '', markdown) if inline else markdown


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
            '## `mmp_ros replay BAG`\n## The synthetic bag (`mmp_ros synth-bag`)\n'
            '```\n# not a heading\n```\n')
    assert heading_ids(page) == {
        'robustness-to-missing-modalities',
        'test-split-mean-of-seeds-0-1-miou--per-available-subset',
        'seed-0-from-scratch-1000-steps--16',
        'runs', 'runs-1',
        'mmp_ros-replay-bag', 'the-synthetic-bag-mmp_ros-synth-bag',
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


CODE = re.compile(r'^```[^\n]*\n(.*?)^```|`([^`\n]+)`', re.S | re.M)
# `mmp_ros COMMAND ...` (or `python -m mmp_ros.demo ...`) up to the end of the line, with
# backslash continuations; not `ros2 launch mmp_ros ...` or a path ending in mmp_ros.
COMMAND_LINE = re.compile(
    r'(?<![\w./-])(?:mmp_ros|python -m mmp_ros\.(demo))[ \t]+((?:[^\n\\]|\\\n)*)')


@cache
def command_options(command: str) -> frozenset[str]:
    from mmp_ros.cli import COMMANDS

    parser = argparse.ArgumentParser()
    needs_importable(COMMANDS[command][0]).add_arguments(parser)
    return frozenset(parser._option_string_actions)


def command_mismatches(page: Path) -> list[str]:
    """``mmp_ros X --flag`` in the page's code where X is no command or has no --flag. A word
    after ``mmp_ros`` that is not close to a command name is prose or output, not a typo."""
    from mmp_ros.cli import COMMANDS

    text, found = page.read_text(encoding='utf-8'), []
    for block in CODE.finditer(text):
        group = 1 if block.group(1) is not None else 2
        for match in COMMAND_LINE.finditer(block.group(group)):
            line = text[:block.start(group) + match.start()].count('\n') + 1
            words = match.group(2).replace('\\\n', ' ').split()
            if match.group(1):
                command = 'demo'
            elif words:
                command, words = words[0], words[1:]
            else:
                continue
            if command.endswith(':'):  # a command's error message: `mmp_ros dropout: ...`
                continue
            if command not in COMMANDS:
                if difflib.get_close_matches(command, COMMANDS, cutoff=0.8):
                    found.append(f'line {line}: no command {command!r}')
                continue
            for word in words:
                if word == '--ros-args':  # the rest is rclpy's
                    break
                flag = word.split('=')[0]
                if flag.startswith('--') and flag not in command_options(command):
                    found.append(f'line {line}: mmp_ros {command} has no {flag}')
    return found


def test_a_wrong_command_or_option_is_found(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('Run `mmp_ros replay BAG --rate 2 --loop`, then\n\n```\n'
                    'mmp_ros dropout --schedule s.yaml --seeds 3 \\\n'
                    '    --chek --ros-args --foo\n'
                    'mmp_ros replya BAG\nmmp_ros dropout: s.yaml:3: unknown sensor\n```\n'
                    '`ros2 launch mmp_ros x.launch.py --show-args`, and\n'
                    '`python -m mmp_ros.demo --fast`\n')
    assert command_mismatches(page) == [
        'line 4: mmp_ros dropout has no --seeds', 'line 4: mmp_ros dropout has no --chek',
        "line 6: no command 'replya'", 'line 10: mmp_ros demo has no --fast',
    ]


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_command_and_option_exists(page):
    assert command_mismatches(page) == []


SENSOR_PARAMETER = re.compile(r'(?<![\w.])(sensors\.(?:[a-z]+|<m>|<modality>)\.[a-z_0-9]+)\b')


def unknown_sensor_parameters(page: Path) -> list[str]:
    """``sensors.thermal.timeout_s`` or ``sensors.<m>.qos`` that the node does not declare."""
    from mmp_ros.core.parameters import all_parameters
    from mmp_ros.modalities import MODALITIES

    declared = set(all_parameters())
    found = []
    for name in SENSOR_PARAMETER.findall(page.read_text(encoding='utf-8')):
        _, modality, field = name.split('.')
        modalities = MODALITIES if modality.startswith('<') else (modality,)
        if not any(f'sensors.{m}.{field}' in declared for m in modalities):
            found.append(name)
    return found


def test_an_unknown_sensor_parameter_is_found(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('`sensors.<m>.qos`, `sensors.thermal.semantics`, `sensors.rgb.semantics`, '
                    '`sensors.<modality>.*`, `ros2 param set /node sensors.<m>.timeout 1.0`\n')
    assert unknown_sensor_parameters(page) == ['sensors.rgb.semantics', 'sensors.<m>.timeout']


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_sensor_parameter_is_declared(page):
    assert unknown_sensor_parameters(page) == []


def ceiling_table_mismatches(page: Path, report: Path) -> list[str]:
    """Rows of the page's ceiling table (``| subset | equal | pixel-weighted | groups |``)
    whose figures are not the report's, rounded as scripts/generator_report.py prints them."""
    import json

    subsets = json.loads(report.read_text(encoding='utf-8'))['subsets']
    found = []
    for line in page.read_text(encoding='utf-8').splitlines():
        cells = [cell.strip() for cell in line.strip('|').split('|')]
        if len(cells) != 4 or cells[0] not in subsets:
            continue
        entry = subsets[cells[0]]
        expected = [f"{entry['ceiling_miou']:.3f}", f"{entry['ceiling_miou_pixel_weighted']:.3f}"]
        if cells[1:3] != expected:
            found.append(f'{cells[0]}: {cells[1:3]} in the page, {expected} in {report.name}')
    return found


def test_a_ceiling_that_differs_from_the_report_is_found(tmp_path):
    report = tmp_path / 'ceiling.json'
    report.write_text('{"subsets": {"rgb": {"ceiling_miou": 0.7333, '
                      '"ceiling_miou_pixel_weighted": 0.82855}}}')
    page = tmp_path / 'page.md'
    page.write_text('| subset | a | b | c |\n| rgb | 0.733 | 0.828 | {x, y} |\n')
    assert ceiling_table_mismatches(page, report) == [
        "rgb: ['0.733', '0.828'] in the page, ['0.733', '0.829'] in ceiling.json"]


def test_the_generator_page_quotes_the_ceiling_report():
    assert ceiling_table_mismatches(ROOT / 'docs/generator.md',
                                    ROOT / 'docs/generator_ceiling.json') == []
