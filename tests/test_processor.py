"""Per-user ordering and flood control, without Telegram."""

from __future__ import annotations

import asyncio

from bot.telegram.processor import FloodGuard, UserLocks, Verdict


def test_flood_guard_warns_once_then_drops_until_the_mute_ends() -> None:
    guard = FloodGuard(max_messages=3, window=10, mute=30)
    verdicts = [guard.admit(1, now=float(t) / 10) for t in range(6)]
    assert verdicts == [Verdict.ADMIT] * 3 + [Verdict.WARN] + [Verdict.DROP] * 2
    assert guard.admit(2, now=0.5) is Verdict.ADMIT  # others are not affected
    assert guard.admit(1, now=29.0) is Verdict.DROP
    assert guard.admit(1, now=31.0) is Verdict.ADMIT


def test_flood_guard_counts_only_the_window() -> None:
    guard = FloodGuard(max_messages=3, window=10, mute=30)
    assert all(guard.admit(1, now=float(t) * 4) is Verdict.ADMIT for t in range(20))


def test_flood_guard_forgets_quiet_users() -> None:
    guard = FloodGuard(max_messages=3, window=1, mute=1)
    for user in range(FloodGuard._SWEEP_EVERY - 1):
        guard.admit(user, now=0.0)
    guard.admit(10**9, now=100.0)
    assert len(guard._recent) == 1


async def test_a_users_inputs_run_one_at_a_time_in_arrival_order() -> None:
    locks = UserLocks()
    seen: list[tuple[int, int]] = []

    async def handle(user: int, number: int) -> None:
        async with locks.hold(user):
            seen.append((user, number))
            await asyncio.sleep(0.001 * (5 - number))  # later inputs would finish first
            seen.append((user, number))

    await asyncio.gather(*(handle(user, n) for n in range(5) for user in (1, 2)))
    for user in (1, 2):
        mine = [number for who, number in seen if who == user]
        assert mine == [n for n in range(5) for _ in range(2)]
    assert len(locks) == 0
