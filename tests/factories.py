"""Participants as the store would hold them, for tests that start past the signup."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from conversations.model import SIGNUP_CONSENTS, Area, Consent, Entry, Participant, Step
from tests.conftest import NOW

_ENTRY_FIELDS = ("ticket", "excluded_reason", "entered_at")


def entered(user_id: int, **changes: Any) -> Participant:
    """A confirmed participant with an entry made from their profile (after `changes`).

    `ticket`, `excluded_reason` and `entered_at` change the entry; `entry=None` leaves none.
    """
    entry_changes = {name: changes.pop(name) for name in _ENTRY_FIELDS if name in changes}
    person = replace(
        Participant(
            user_id=user_id,
            language="fr",
            created_at=NOW,
            step=Step.COMPLETE,
            consents=tuple(Consent(kind, "fr-v", NOW) for kind in SIGNUP_CONSENTS),
            first_name="Zoé",
            last_name="Martin",
            phone=f"+3361234{user_id:04d}",
            email=f"p{user_id}@free.fr",
            postcode="69003",
            departement="69",
            area=Area.PROVINCE,
            completed_at=NOW,
        ),
        **changes,
    )
    if "entry" in changes:
        return person
    assert person.email and person.phone and person.postcode and person.departement
    assert person.area
    entry = Entry(
        ticket=f"TICKET{user_id:04d}",
        email=person.email,
        phone=person.phone,
        postcode=person.postcode,
        departement=person.departement,
        area=person.area,
        consents=person.consents,
        entered_at=NOW,
    )
    return replace(person, entry=replace(entry, **entry_changes))
