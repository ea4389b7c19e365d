"""What every email says about who sends it and why, and what never goes into a subject."""

from __future__ import annotations

import copy
from email.header import decode_header, make_header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.policy import Compat32, compat32

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.mail import emails
from bot.mail.emails import EmailRenderer
from bot.mail.eml import as_8bit
from bot.settings import Settings
from bot.texts import load_catalogue
from conversations.catalogue import Catalogue
from storage.ports import OutboxEmail

# A name typed at signup, as a spammer would choose it.
TYPED = "Gagnez un iPhone sur promo.example"
PARAMS = {
    "confirmation": {"first_name": TYPED, "token": "Tok3n", "code": "123456"},
    "invitation": {"first_name": TYPED, "referral_code": "REF1", "address_hash": "ab" * 16},
    "winner": {"first_name": TYPED, "ticket": "TK1", "travel": "Train", "deadline": "lundi"},
    # Sent instead of a confirmation to an address another account confirmed: nothing typed.
    "address_taken": {},
}
KINDS = [(kind, language) for kind in PARAMS for language in ("fr", "en")]
CONTROLLER = {
    "controller_name": "Association Les Amis de Camille",
    "controller_address": "12 rue des Cafés, 69003 Lyon",
    "controller_email": "droits@amis.example",
    "dpo_contact": "dpo@amis.example",
}


def render(texts: Catalogue, kind: str, language: str) -> Message:
    renderer = EmailRenderer(texts, "Campagne <cafe@campagne.example>", "coffee_test_bot")
    email = OutboxEmail(f"{kind}:1", kind, "ami@free.fr", language, PARAMS[kind], 0)
    return renderer.render(email)


def parts(message: Message) -> tuple[str, str]:
    text, html = (part.get_payload(decode=True) for part in message.get_payload())  # type: ignore[union-attr]
    assert isinstance(text, bytes) and isinstance(html, bytes)
    return text.decode(), html.decode()


def subject(message: Message) -> str:
    return str(make_header(decode_header(message["Subject"])))


@pytest.mark.parametrize(("kind", "language"), KINDS)
def test_no_subject_carries_what_a_person_typed(texts: Catalogue, kind: str, language: str) -> None:
    message = render(texts, kind, language)
    assert TYPED not in subject(message) and "{" not in subject(message)
    assert "Camille Dupont" in subject(message)  # the settings' values still fill it
    assert TYPED not in texts.texts[language][f"email.{kind}.subject"]


@pytest.mark.parametrize(("kind", "language"), KINDS)
def test_every_email_names_the_controller_and_where_to_exercise_rights(
    settings: Settings, kind: str, language: str
) -> None:
    texts = load_catalogue(settings.replace(**CONTROLLER))
    for part in parts(render(texts, kind, language)):
        for value in CONTROLLER.values():
            if value != CONTROLLER["dpo_contact"]:
                assert value in part, (kind, language, value)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_invitation_carries_the_article_14_information(
    settings: Settings, language: str
) -> None:
    texts = load_catalogue(settings.replace(**CONTROLLER, retention_after_end_days=45))
    text, html = parts(render(texts, "invitation", language))
    says = {
        "fr": ("donné votre adresse", "empreinte", "clé secrète", "intérêt légitime", "CNIL"),
        "en": ("gave us your address", "fingerprint", "secret key", "legitimate interest", "CNIL"),
    }[language]
    for part in (text, html):
        for words in (*says, "dpo@amis.example", "45", TYPED, "start=u_" + "ab" * 16):
            assert words in part, (language, words)
        # An address is never said to be forgotten: its keyed hash is kept.
        for untrue in ("n’est pas conservée", "n'est pas conservée", "is not kept"):
            assert untrue not in part


def test_english_texts_show_the_english_names_when_they_are_set(settings: Settings) -> None:
    texts = load_catalogue(
        settings.replace(
            campaign_name="La campagne de Camille",
            campaign_name_en="Camille's campaign",
            candidate_name_en="Camille D.",
        )
    )
    english = texts.render("en", "welcome")
    assert "Camille's campaign" in english and "Camille D." in english
    assert "La campagne de Camille" not in english
    assert "La campagne de Camille" in texts.render("fr", "welcome")
    text, html = parts(render(texts, "invitation", "en"))
    assert "Camille's campaign" in text and "La campagne de Camille" not in text + html
    assert "Camille D." in subject(render(texts, "invitation", "en"))


def test_without_english_names_english_texts_use_the_common_ones(settings: Settings) -> None:
    texts = load_catalogue(settings.replace(campaign_name="La campagne de Camille"))
    assert "La campagne de Camille" in texts.render("en", "welcome")


def test_the_privacy_notice_states_the_controller_recipients_retention_and_every_right(
    settings: Settings,
) -> None:
    texts = load_catalogue(
        settings.replace(
            **CONTROLLER,
            mail_provider="Courrier SAS",
            hosting_provider="Hôte SAS",
            retention_incomplete_days=21,
            retention_after_end_days=60,
        )
    )
    rights = {
        "fr": ("accès", "rectification", "effacement", "limitation", "opposition", "portabilité",
               "retrait", "CNIL", "décès", "Telegram", "hors de l’Union européenne"),
        "en": ("access", "rectification", "erasure", "restriction", "objection", "portability",
               "withdrawal", "CNIL", "death", "Telegram", "outside the European Union"),
    }  # fmt: skip
    for language, words in rights.items():
        notice = texts.render(language, "privacy")
        for value in (*CONTROLLER.values(), "Courrier SAS", "Hôte SAS", "21", "60", *words):
            assert value.casefold() in notice.casefold(), (language, value)
        rules = texts.render(language, "rules", dates="", **dict.fromkeys(_TRAVEL, ""))
        assert CONTROLLER["controller_name"] in rules and CONTROLLER["controller_email"] in rules


_TRAVEL = ("travel_paris", "travel_ile_de_france", "travel_province", "travel_corsica",
           "travel_overseas")  # fmt: skip


@pytest.mark.parametrize(("kind", "language"), KINDS)
def test_an_email_is_the_bytes_the_generator_would_have_written(
    texts: Catalogue, kind: str, language: str
) -> None:
    # The renderer encodes each subject once and draws the boundary itself (both were a third
    # of an email's CPU): the flattened email must be what the generator made of the plain
    # subject and its own boundary, for the SMTP path and the .eml files alike.
    flattened = [
        # The SMTP path (ASCII addresses) and the .eml files, against the generator's compat32.
        (lambda m: m.as_bytes(policy=emails.MAIL_POLICY), lambda m: m.as_bytes(policy=compat32)),
        (lambda m: bytes(as_8bit(m)), lambda m: bytes(as_8bit(m))),
    ]
    for flatten, flatten_plain in flattened:
        message = render(texts, kind, language)
        plain = MIMEMultipart("alternative")  # compat32; the generator draws its boundary
        for name, value in message.items():
            if name == "Subject":
                plain[name] = texts.render(language, f"email.{kind}.subject")
            elif name not in ("Content-Type", "MIME-Version"):
                plain[name] = value
        for part in message.get_payload():
            plain_part = copy.deepcopy(part)
            plain_part.policy = compat32
            plain.attach(plain_part)
        ours, generators = flatten(message), flatten_plain(plain)
        boundary, drawn = message.get_boundary(), plain.get_boundary()
        assert boundary and drawn and boundary != drawn
        assert ours == generators.replace(drawn.encode(), boundary.encode())


def test_a_boundary_found_in_a_part_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([7, 7, 8])
    monkeypatch.setattr(emails.random, "randrange", lambda _: next(draws))
    taken = f"{'=' * 15}{7:019d}=="
    assert emails._boundary(f"typed {taken} here", "html") == f"{'=' * 15}{8:019d}=="


@given(
    st.sampled_from(["Subject", "To", "Message-ID", "List-Unsubscribe", "X-Long-Header-Name"]),
    st.text(st.characters(codec="utf-8"), max_size=120)
    | st.text(st.sampled_from("ab =\t:;<>@.-\r\n\x00"), max_size=90),
)
def test_the_mail_policy_folds_every_header_as_compat32_does(name: str, value: str) -> None:
    def folded(policy: Compat32) -> bytes | str:
        try:
            return policy.fold_binary(name, value)
        except Exception as error:  # compat32 refuses some values: so must the mail policy
            return type(error).__name__

    assert folded(emails.MAIL_POLICY) == folded(compat32)
