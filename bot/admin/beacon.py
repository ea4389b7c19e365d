"""Fetches the draw's public randomness from a drand HTTP endpoint.

The round is the first one published at or after the freeze time plus BEACON_DELAY_SECONDS,
computed from the chain's /info (genesis_time, period); its randomness must be the SHA-256 of
its signature. The BLS signature itself is not verified here: anyone can check it with drand's
own tools, as the README says.
"""

from __future__ import annotations

from datetime import datetime

import httpx

from conversations.draw import (
    Beacon,
    BeaconSource,
    drand_randomness,
    drand_round_at,
    drand_round_time,
)


class BeaconUnavailable(Exception):
    """No value yet: the round is not published, or the endpoint cannot be reached."""

    def __init__(self, reason: str, expected_at: datetime | None = None) -> None:
        super().__init__(reason)
        self.expected_at = expected_at


async def fetch_drand(url: str, not_before: datetime, now: datetime, wait_seconds: float) -> Beacon:
    base = url.rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=wait_seconds) as client:
            info_response = await client.get(f"{base}/info")
            info_response.raise_for_status()
            info = info_response.json()
            genesis_time, period = int(info["genesis_time"]), int(info["period"])
            round_number = drand_round_at(not_before, genesis_time, period)
            expected_at = drand_round_time(round_number, genesis_time, period)
            if now < expected_at:
                raise BeaconUnavailable(f"round {round_number} not yet published", expected_at)
            response = await client.get(f"{base}/public/{round_number}")
            if response.status_code in (404, 425):
                raise BeaconUnavailable(f"round {round_number} not yet published", expected_at)
            response.raise_for_status()
            data = response.json()
            signature, randomness = str(data["signature"]), str(data["randomness"])
            if data.get("round") != round_number or drand_randomness(signature) != randomness:
                raise BeaconUnavailable(f"round {round_number}: the answer does not check out")
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as error:
        raise BeaconUnavailable(f"{type(error).__name__} from the beacon") from error
    return Beacon(
        source=BeaconSource.DRAND,
        value=randomness,
        not_before=not_before.isoformat(),
        round=round_number,
        signature=signature,
        chain_hash=info.get("hash"),
        url=base,
        genesis_time=genesis_time,
        period=period,
    )
