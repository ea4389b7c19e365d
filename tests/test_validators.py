"""Real-life answers people type, and what each check makes of them."""

from __future__ import annotations

import pytest

from conversations.model import Area
from conversations.validators import (
    EmailAddress,
    Postcode,
    Refusal,
    check_email,
    check_name,
    check_phone,
    check_postcode,
    check_question,
    check_shared_phone,
)


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("0612345678", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("06-12-34-56-78", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("07 81 22 33 44", "+33781223344"),
        ("01 42 34 56 78", "+33142345678"),  # Paris landline
        ("04 78 12 34 56", "+33478123456"),  # Lyon landline
        ("0692 12 34 56", "+262692123456"),  # Réunion mobile, written the national way
        ("0590 81 23 45", "+590590812345"),  # Guadeloupe landline
        ("0696 12 34 56", "+596696123456"),  # Martinique mobile
        ("+262 692 12 34 56", "+262692123456"),
        ("+687 75 12 34", "+687751234"),  # New Caledonia
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 202 555 0143", "+12025550143"),
        ("+32 470 12 34 56", "+32470123456"),
    ],
)
def test_phone_numbers_in_usual_writings(typed: str, e164: str) -> None:
    assert check_phone(typed) == e164


@pytest.mark.parametrize(
    "typed",
    [
        "0612",
        "06 12 34 56 78 90 12",
        "12345",
        "",
        "   ",
        "bonjour",
        "+33 6 12",
        "06 12 34 56 7\u200b8",
        "0" * 60,
    ],
)
def test_invalid_phone_numbers_are_refused(typed: str) -> None:
    assert check_phone(typed) == Refusal("refusal.phone.invalid")


def test_a_shared_contact_may_lack_its_plus() -> None:
    assert check_shared_phone("33612345678") == "+33612345678"
    assert check_shared_phone("+33612345678") == "+33612345678"


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("zoe.martin@gmail.com", "zoe.martin@gmail.com"),
        ("Zoe.Martin+cafe@Gmail.COM", "Zoe.Martin+cafe@gmail.com"),
        ("  jean-pierre.o'neil@orange.fr ", "jean-pierre.o'neil@orange.fr"),
        ("élodie@exemple.fr", "élodie@exemple.fr"),
        ("contact@café.fr", "contact@café.fr"),
        ("user@xn--caf-dma.fr", "user@café.fr"),
        ("a.b.c@sub.domaine.gouv.fr", "a.b.c@sub.domaine.gouv.fr"),
    ],
)
def test_valid_emails_are_normalised(typed: str, normalised: str) -> None:
    checked = check_email(typed, check_deliverability=False)
    assert isinstance(checked, EmailAddress)
    assert checked.address == normalised
    assert checked.suggestion is None


@pytest.mark.parametrize(
    "typed",
    ["zoe", "zoe@", "@gmail.com", "zoe@gmail", "zoe..martin@gmail.com", "zoe martin@gmail.com",
     "zoe@gmail..com", "zoe@localhost", "zoe@-gmail.com", "x" * 250 + "@gmail.com",
     "zoe@gm\u200bail.com"],
)  # fmt: skip
def test_invalid_emails_are_refused(typed: str) -> None:
    assert check_email(typed, check_deliverability=False) == Refusal("refusal.email.invalid")


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [
        ("zoe@gmial.com", "zoe@gmail.com"),
        ("zoe@gmail.con", "zoe@gmail.com"),
        ("zoe@gmal.com", "zoe@gmail.com"),
        ("zoe@hotmial.fr", "zoe@hotmail.fr"),
        ("zoe@orange.fe", "zoe@orange.fr"),
        ("zoe@wanadoo.fe", "zoe@wanadoo.fr"),
        ("zoe@yahooo.fr", "zoe@yahoo.fr"),
        ("zoe@laposte.ner", "zoe@laposte.net"),
    ],
)
def test_domain_typos_get_a_suggestion(typed: str, suggestion: str) -> None:
    checked = check_email(typed, check_deliverability=False)
    assert isinstance(checked, EmailAddress)
    assert checked.address == typed and checked.suggestion == suggestion


@pytest.mark.parametrize(
    ("typed", "departement", "area"),
    [
        ("75116", "75", Area.PARIS),
        ("75001", "75", Area.PARIS),
        ("92100", "92", Area.ILE_DE_FRANCE),
        ("77000", "77", Area.ILE_DE_FRANCE),
        ("69003", "69", Area.PROVINCE),
        ("01000", "01", Area.PROVINCE),
        ("13 008", "13", Area.PROVINCE),
        ("20000", "2A", Area.CORSICA),
        ("20200", "2B", Area.CORSICA),
        ("20600", "2B", Area.CORSICA),
        ("97400", "974", Area.OVERSEAS),
        ("97110", "971", Area.OVERSEAS),
        ("97600", "976", Area.OVERSEAS),
        ("98800", "988", Area.OVERSEAS),
    ],
)
def test_french_postcodes_give_departement_and_area(
    typed: str, departement: str, area: Area
) -> None:
    assert check_postcode(typed) == Postcode(typed.replace(" ", ""), departement, area)


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("98000", "refusal.postcode.not_france"),  # Monaco
        ("00000", "refusal.postcode.not_france"),
        ("96000", "refusal.postcode.not_france"),
        ("97700", "refusal.postcode.not_france"),
        ("98400", "refusal.postcode.not_france"),
        ("7511", "refusal.postcode.format"),
        ("751160", "refusal.postcode.format"),
        ("75O16", "refusal.postcode.format"),
        ("SW1A 1AA", "refusal.postcode.format"),
        ("", "refusal.postcode.format"),
    ],
)
def test_other_postcodes_are_refused(typed: str, reason: str) -> None:
    assert check_postcode(typed) == Refusal(reason)


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("Zoé", "Zoé"),
        ("  Jean-Pierre  ", "Jean-Pierre"),
        ("Marie   Claire", "Marie Claire"),
        ("O'Neil", "O'Neil"),
        ("N’Diaye", "N’Diaye"),
        ("J.-M.", "J.-M."),
        ("Nguyễn", "Nguyễn"),
        ("Łukasz", "Łukasz"),
        ("Мария", "Мария"),
        ("محمد", "محمد"),
        ("李小龙", "李小龙"),
        ("Zoe\u0301", "Zoé"),  # combining accent, composed
    ],
)
def test_names_in_any_script(typed: str, kept: str) -> None:
    assert check_name(typed, 60) == kept


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "refusal.name.empty"),
        ("   ", "refusal.name.empty"),
        ("A" * 61, "refusal.name.too_long"),
        ("123", "refusal.name.digits"),
        ("Zoé2", "refusal.name.digits"),
        ("http://spam.example", "refusal.name.link"),
        ("www.spam.fr", "refusal.name.link"),
        ("zoe@gmail.com", "refusal.name.link"),
        ("😀😀", "refusal.name.no_letters"),
        ("-.'", "refusal.name.no_letters"),
        ("Zoé\u200b", "refusal.invisible"),
        ("Zo\x00é", "refusal.invisible"),
        ("<b>Zoé</b>", "refusal.name.character"),
        ("*Zoé*", "refusal.name.character"),
        ("Zoé 😀", "refusal.name.character"),
    ],
)
def test_names_refused(typed: str, reason: str) -> None:
    checked = check_name(typed, 60)
    assert isinstance(checked, Refusal) and checked.reason == reason


def test_questions_keep_lines_and_emoji_but_not_invisible_characters() -> None:
    assert (
        check_question("  Bonjour !\nEt les trains ? 👨‍👩‍👧  ", 500)
        == "Bonjour !\nEt les trains ? 👨‍👩‍👧"
    )
    assert check_question("a\u200bb", 500) == Refusal("refusal.invisible")
    too_long = check_question("x" * 501, 500)
    assert isinstance(too_long, Refusal) and too_long.params == {"max": "500", "length": "501"}
