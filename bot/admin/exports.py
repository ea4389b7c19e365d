"""The participants' CSV export, streamed row by row from the database into a file: memory stays
flat however many there are. Used by /export and `coffeebot export`."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import TextIO

from conversations.admin import EXPORT_START, export_line
from storage import Storage


async def export_into(storage: Storage, out: TextIO) -> int:
    """The CSV export written to `out`, one row at a time; returns the number of rows."""
    rows = 0
    out.write(EXPORT_START + export_line(None))
    async for row in storage.reports.export_rows():
        out.write(export_line(row))
        rows += 1
    return rows


async def write_export(storage: Storage, path: Path) -> int:
    with path.open("w", encoding="utf-8", newline="") as out:
        return await export_into(storage, out)


def gzipped(path: Path) -> Path:
    """The file compressed beside it, streamed."""
    target = path.with_name(path.name + ".gz")
    with path.open("rb") as source, gzip.open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    return target
