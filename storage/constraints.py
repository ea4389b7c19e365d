"""Which domain error each named constraint stands for. Every index and constraint has the same
name on every backend (PostgreSQL's names; the SQLite layer works them out from its messages),
so a violation is recognised by its name, never by an error message's wording."""

from __future__ import annotations

from collections.abc import Callable

from storage.ports import ContactTaken, DuplicateUpdate, StaleWrite

CONSTRAINTS: dict[str, Callable[[], Exception]] = {
    "processed_updates_pkey": DuplicateUpdate,
    # Before migration 9, and for databases not yet migrated past it.
    "participants_phone_key": lambda: ContactTaken("phone"),
    "participants_email_key": lambda: ContactTaken("email"),
    "entries_email_key": lambda: ContactTaken("email"),
    "participants_verified_phone_key": lambda: ContactTaken("phone"),
    "entries_address_key": lambda: ContactTaken("email"),
    # A first save racing another for the same new person: the loser reloads.
    "participants_pkey": StaleWrite,
    # Two audit entries appended at once on PostgreSQL: both read the same head; one retries.
    "audit_log_seq": StaleWrite,
    # Another admin (or a double tap) recorded this expense's next payment first.
    "expense_payments_pkey": StaleWrite,
}


def violation(name: str, error: Exception) -> Exception:
    """The domain's exception for a violated constraint, or the error itself if unnamed here."""
    make = CONSTRAINTS.get(name)
    return make() if make is not None else error
