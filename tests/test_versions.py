"""casyncio._versions.since(): which Python releases carry a change."""

from __future__ import annotations

import sys

import pytest

from casyncio._versions import since

# A change backported to 3.13.14 and 3.14.6 (gh-150107's releases).
BACKPORTED = ((3, 13, 14), (3, 14, 6))


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ((3, 12, 9), False),  # an older minor line, not listed
        ((3, 13, 13), False),
        ((3, 13, 14), True),
        ((3, 14, 5), False),
        ((3, 14, 6), True),
        ((3, 14, 7), True),
        ((3, 15, 0), True),  # a newer minor line has it from its start
    ],
)
def test_since_follows_each_listed_minor_line(version, expected):
    assert since(*BACKPORTED, version=version) is expected


def test_since_order_of_releases_does_not_matter():
    for v in ((3, 11, 7), (3, 11, 8), (3, 12, 1), (3, 12, 2), (3, 13, 0)):
        assert since((3, 11, 8), (3, 12, 2), version=v) == since((3, 12, 2), (3, 11, 8), version=v)


def test_since_reads_the_running_python_by_default():
    current = tuple(sys.version_info[:3])
    assert since(current) is True
    assert since((current[0], current[1], current[2] + 1)) is False
