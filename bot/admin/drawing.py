"""Runs the draw off the event loop, its HMAC ordering spread over the machine's cores.

This process and one worker per other core each find the first tickets of their share with the
core's own `first_drawn`; the first of those are the first of all, so the result is the core's,
only sooner. Workers come from a fork server: the bot's process has threads, and is never forked.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from itertools import repeat

from conversations.draw import Beacon, DrawCertificate, FrozenDraw, draw, first_drawn

# Below this, starting worker processes costs more than it saves.
PARALLEL_FROM = 50_000


def first_drawn_in_parallel(seed: bytes, tickets: Sequence[str], count: int) -> list[str]:
    workers = os.cpu_count() or 1
    if workers < 2 or len(tickets) < PARALLEL_FROM:
        return first_drawn(seed, tickets, count)
    size = -(-len(tickets) // workers)
    own, *others = [tickets[start : start + size] for start in range(0, len(tickets), size)]
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(len(others), mp_context=context) as pool:
        theirs = pool.map(first_drawn, repeat(seed), others, repeat(count))
        firsts = first_drawn(seed, own, count) + [ticket for share in theirs for ticket in share]
    return first_drawn(seed, firsts, count)


async def draw_off_loop(
    frozen: FrozenDraw, beacon: Beacon, at: datetime, audit_head: str
) -> DrawCertificate:
    """The core's draw, in a thread so that the bot keeps answering people meanwhile."""
    return await asyncio.to_thread(draw, frozen, beacon, at, audit_head, first_drawn_in_parallel)
