"""Which Python releases carry a change to asyncio's behaviour.

casyncio follows the running Python where asyncio's behaviour changed, down to
the micro release when a fix was backported: a change made in 3.15 and
backported to 3.14.6 and 3.13.14 is in every 3.15, in 3.14 from 3.14.6 and in
3.13 from 3.13.14, and in no 3.12.
"""

from __future__ import annotations

import sys


def since(*releases: tuple[int, int, int], version: tuple[int, ...] | None = None) -> bool:
    """Whether the running Python (or `version`) has a change made in the
    given releases, one per minor line: a minor line listed has it from its
    micro release on; one that is not has it if it is newer than all those
    listed."""
    major, minor, micro = (version or sys.version_info)[:3]
    for r_major, r_minor, r_micro in releases:
        if (major, minor) == (r_major, r_minor):
            return micro >= r_micro
    return (major, minor) > max(releases)[:2]
