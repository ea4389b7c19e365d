"""Real-life answers people type, and what each check makes of them."""

from __future__ import annotations

import pytest

from conversations.model import Area
from conversations.validators import (
    TAG_IGNORING_PROVIDERS,
    EmailAddress,
    Postcode,
    Refusal,
    address_key,
    check_email,
    check_name,
    check_phone,
    check_postcode,
    check_question,
    check_shared_phone,
    same_address,
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
        "06 12 34 56 7\x008",  # a control character is not formatting: refused
        "0639 12 34 56",  # Mayotte's 0639 1x block holds no number
        "0" * 60,
    ],
)
def test_invalid_phone_numbers_are_refused(typed: str) -> None:
    assert check_phone(typed) == Refusal("refusal.phone.invalid")


@pytest.mark.parametrize(
    "pasted",
    [
        "\u202a+33 6 12 34 56 78\u202c",  # copied from a contacts app: LTR embedding
        "\u2066+33 6 12 34 56 78\u2069",  # LTR isolate
        "\u2068\u200e06 12 34 56 78\u2069",  # first-strong isolate and LTR mark
        "\u200f+33\u00a06\u00a012\u00a034\u00a056\u00a078",  # RTL mark, no-break spaces
        "06\u202f12\u202f34\u202f56\u202f78",  # narrow no-break spaces, French typography
        "06\u200912\u200934\u200956\u200978",  # thin spaces
        "\ufeff0612345678",  # byte-order mark at the start of a pasted text
        "06 12 34 56 7\u200b8",  # zero-width space
        "06\u206012\u206034\u206056\u206078",  # word joiners
        # full-width digits and an ideographic space
        "\u3000\uff10\uff16 \uff11\uff12 \uff13\uff14 \uff15\uff16 \uff17\uff18",
        "\uff0b\uff13\uff13 6 12 34 56 78",  # full-width plus
    ],
)
def test_pasted_phone_numbers_lose_what_does_not_show(pasted: str) -> None:
    assert check_phone(pasted) == "+33612345678"


# One number a territory, in the writing people there use, then in international form.
OVERSEAS = [
    ("Guadeloupe", "0690 12 34 56", "+590 690 12 34 56", "+590690123456"),
    ("Guadeloupe (fixe)", "0590 81 23 45", "+590 590 81 23 45", "+590590812345"),
    ("Martinique", "0696 20 12 34", "+596 696 20 12 34", "+596696201234"),
    ("Martinique (fixe)", "0596 30 12 34", "+596 596 30 12 34", "+596596301234"),
    ("Guyane", "0694 20 12 34", "+594 694 20 12 34", "+594694201234"),
    ("Guyane (fixe)", "0594 10 12 34", "+594 594 10 12 34", "+594594101234"),
    ("La Réunion", "0692 12 34 56", "+262 692 12 34 56", "+262692123456"),
    ("La Réunion (fixe)", "0262 16 12 34", "+262 262 16 12 34", "+262262161234"),
    ("Mayotte", "0639 21 23 45", "+262 639 21 23 45", "+262639212345"),
    ("Mayotte (fixe)", "0269 61 23 45", "+262 269 61 23 45", "+262269612345"),
    ("Saint-Pierre-et-Miquelon", "055 12 34", "+508 55 12 34", "+508551234"),
    ("Saint-Barthélemy", "0590 27 12 34", "+590 590 27 12 34", "+590590271234"),
    ("Saint-Martin", "0590 87 12 34", "+590 590 87 12 34", "+590590871234"),
    ("Saint-Martin (mobile)", "0690 22 12 34", "+590 690 22 12 34", "+590690221234"),
    ("Polynésie française", "87 12 34 56", "+689 87 12 34 56", "+68987123456"),
    ("Polynésie française (fixe)", "40 41 23 45", "+689 40 41 23 45", "+68940412345"),
    ("Nouvelle-Calédonie", "75 12 34", "+687 75 12 34", "+687751234"),
    ("Nouvelle-Calédonie (fixe)", "20 12 34", "+687 20 12 34", "+687201234"),
]


@pytest.mark.parametrize(("territory", "national", "international", "e164"), OVERSEAS)
def test_overseas_numbers_get_their_territory_s_country_code(
    territory: str, national: str, international: str, e164: str
) -> None:
    assert check_phone(national) == e164, territory
    assert check_phone(international) == e164, territory
    assert check_phone("00" + international.removeprefix("+")) == e164, territory


@pytest.mark.parametrize(
    ("territory", "national", "international", "e164"),
    [
        ("Wallis-et-Futuna", "72 12 34", "+681 72 12 34", "+681721234"),
        ("Wallis-et-Futuna (mobile)", "82 12 34", "+681 82 12 34", "+681821234"),
        ("Saint-Pierre-et-Miquelon", "41 23 45", "+508 41 23 45", "+508412345"),
        ("Nouvelle-Calédonie", "55 12 34", "+687 55 12 34", "+687551234"),
    ],
)
def test_six_digits_shared_by_two_territories_ask_for_the_country_code(
    territory: str, national: str, international: str, e164: str
) -> None:
    # The same six digits are a number in New Caledonia and in Wallis-et-Futuna or
    # Saint-Pierre-et-Miquelon: guessing would file one of them under the wrong code.
    assert check_phone(national) == Refusal("refusal.phone.ambiguous"), territory
    assert check_phone(international) == e164, territory


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
        ("\u3164", "refusal.invisible"),  # HANGUL FILLER, a "letter" that shows nothing
        ("\u3164 \u3164", "refusal.invisible"),
        ("\u115f", "refusal.invisible"),  # HANGUL CHOSEONG FILLER
        ("\uffa0", "refusal.invisible"),  # HALFWIDTH HANGUL FILLER
        ("Zo\u3164é", "refusal.invisible"),
        ("\u2800", "refusal.invisible"),  # BRAILLE PATTERN BLANK
        ("\u200b\u200c", "refusal.invisible"),
        ("\u2060", "refusal.invisible"),
        ("\u0301", "refusal.name.no_letters"),  # a combining mark with nothing to sit on
        ("\u0301\u0308\u0301", "refusal.name.no_letters"),
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


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Zoe@free.fr", "zoe@FREE.FR"),
        ("ÉLODIE@exemple.fr", "élodie@exemple.fr"),  # Unicode case, not only ASCII
        ("strasse@exemple.de", "STRASSE@exemple.de"),
        ("zoe.martin@gmail.com", "zoemartin@gmail.com"),  # Gmail ignores dots
        ("zoe.martin+cafe@gmail.com", "ZoeMartin@googlemail.com"),  # and tags; one domain
        ("zoe+1@hotmail.fr", "zoe@hotmail.fr"),
        ("zoe+1@hotmail.co.uk", "zoe+2@hotmail.co.uk"),
        ("zoe+a@outlook.com", "zoe@outlook.com"),
        ("zoe+a@live.fr", "zoe@live.fr"),
        ("zoe+a@icloud.com", "zoe@icloud.com"),
        ("zoe+a@me.com", "zoe@me.com"),
        ("zoe+a@proton.me", "zoe@proton.me"),
        ("zoe+a@protonmail.com", "zoe@protonmail.com"),
    ],
)
def test_two_spellings_of_one_mailbox_have_one_key(first: str, second: str) -> None:
    assert address_key(first, TAG_IGNORING_PROVIDERS) == address_key(second, TAG_IGNORING_PROVIDERS)
    assert same_address(first, second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("zoe+a@orange.fr", "zoe@orange.fr"),  # a provider that may treat + as a letter
        ("zoe.martin@orange.fr", "zoemartin@orange.fr"),  # dots count outside Gmail
        ("zoe.martin@hotmail.fr", "zoemartin@hotmail.fr"),
        ("zoe@gmail.com", "zoe@gmail.fr"),
        ("zoe@free.fr", "zoé@free.fr"),
    ],
)
def test_different_mailboxes_have_different_keys(first: str, second: str) -> None:
    assert address_key(first, TAG_IGNORING_PROVIDERS) != address_key(second, TAG_IGNORING_PROVIDERS)
    assert not same_address(first, second)


def test_the_address_key_follows_the_providers_it_is_given() -> None:
    assert address_key("Zoe+a@Exemple.fr", ("exemple.*",)) == "zoe@exemple.fr"
    assert address_key("zoe+a@gmail.com", ()) == "zoe+a@gmail.com"
    assert address_key("Zoe.Martin+a@googlemail.com", ("googlemail.com",)) == "zoemartin@gmail.com"
