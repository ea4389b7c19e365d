"""An admin's /annonce: text, audience, preview with its count, confirmation, cancellation,
electoral silence; and the consent to news on Telegram that makes one of the audiences."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from conversations.admin_effects import Audit
from conversations.announcements import (
    MESSAGE_KEY,
    TELEGRAM_MAX_LENGTH,
    Announcement,
    AnnouncementContext,
    AnnouncementInput,
    AnnouncementRules,
    AnnouncementStep,
    AskAdmins,
    Audience,
    CancelBroadcast,
    Channel,
    QueueBroadcast,
    announce_step,
    awaits_text,
    channel_of,
    in_audience,
    start,
    telegram_length,
)
from conversations.catalogue import Catalogue
from conversations.dates import long_datetime
from conversations.model import (
    Button,
    Command,
    Consent,
    ConsentKind,
    Press,
    RecordConsent,
    Text,
    WithdrawConsent,
)
from conversations.phases import Calendar, SilencePeriod
from conversations.policy import Context
from conversations.signup import step
from tests.conftest import NOW
from tests.factories import entered

ADMIN, OTHER = 1, 2
PLAIN = "<b>Merci</b> à *tous* ! {candidate} vous attend. 🎉"
SILENCE = SilencePeriod(NOW - timedelta(hours=1), NOW + timedelta(hours=5))


@pytest.fixture
def actx(texts: Catalogue) -> AnnouncementContext:
    return AnnouncementContext(
        now=NOW,
        texts=texts,
        language="fr",
        rules=AnnouncementRules(max_length=100),
        calendar=Calendar(),
        zone=ZoneInfo("Europe/Paris"),
        second_admin_required=False,
        recipients={Audience.ENTRANTS: 120, Audience.NEWS_TELEGRAM: 30},
    )


def run(
    announcement: Announcement, ctx: AnnouncementContext, *events: tuple[int, AnnouncementInput]
) -> Announcement:
    for admin_id, event in events:
        outcome = announce_step(announcement, admin_id, event, ctx)
        assert outcome.announcement is not None
        announcement = outcome.announcement
    return announcement


def drafted(ctx: AnnouncementContext) -> Announcement:
    outcome = start(None, 17, ADMIN, ctx)
    assert outcome.announcement is not None
    return outcome.announcement


def previewed(ctx: AnnouncementContext, audience: Audience = Audience.ENTRANTS) -> Announcement:
    return run(
        drafted(ctx), ctx, (ADMIN, Text(PLAIN)), (ADMIN, Press(f"announce.audience.{audience}"))
    )


def test_type_choose_preview_confirm_queues_the_batch(actx: AnnouncementContext) -> None:
    announcement = drafted(actx)
    assert announcement.step == AnnouncementStep.TEXT and awaits_text(announcement, ADMIN)
    assert not awaits_text(announcement, OTHER)
    audience = announce_step(announcement, ADMIN, Text(PLAIN), actx)
    assert audience.announcement is not None
    labels = [row[0].label for row in audience.replies[0].buttons]
    assert "Tous les participants (120)" in labels
    assert "Abonnés aux nouvelles sur Telegram (30)" in labels

    preview = announce_step(
        audience.announcement, ADMIN, Press("announce.audience.news_telegram"), actx
    )
    assert preview.announcement is not None
    # The message exactly as it will go, then the count.
    assert preview.replies[0].text == PLAIN
    assert "abonnés aux nouvelles sur Telegram, soit 30 personne(s)" in preview.replies[1].text
    sent = announce_step(preview.announcement, ADMIN, Press("announce.confirm"), actx)
    assert sent.announcement is not None and sent.announcement.step == AnnouncementStep.SENDING
    assert sent.announcement.confirmed_by == ADMIN
    queue, audit = sent.effects
    assert queue == QueueBroadcast("announce:17", Audience.NEWS_TELEGRAM, PLAIN)
    assert isinstance(audit, Audit) and audit.action == "announce.send"
    assert "announce:17 audience=news_telegram recipients=30" in audit.details
    assert PLAIN not in audit.details


def test_the_text_is_sent_as_typed_never_filled_or_read_as_markup(
    actx: AnnouncementContext, texts: Catalogue
) -> None:
    assert texts.render("fr", MESSAGE_KEY, text=PLAIN) == PLAIN


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("   \n ", "admin.announce.empty"),
        ("x" * 101, "admin.announce.too_long"),
        # 51 emoji are 102 UTF-16 units: what Telegram counts.
        ("🎉" * 51, "admin.announce.too_long"),
    ],
)
def test_a_message_empty_or_too_long_is_refused(
    actx: AnnouncementContext, texts: Catalogue, text: str, key: str
) -> None:
    before = drafted(actx)
    outcome = announce_step(before, ADMIN, Text(text), actx)
    assert outcome.announcement == before and outcome.effects == ()
    assert outcome.replies[0].text.startswith(texts.render("fr", key, max="100"))


def test_the_longest_message_is_taken() -> None:
    assert telegram_length("🎉" * 50) == 100 and telegram_length("é" * 100) == 100


def test_the_length_setting_cannot_exceed_telegrams() -> None:
    assert AnnouncementRules().max_length == TELEGRAM_MAX_LENGTH
    with pytest.raises(ValueError, match="ANNOUNCEMENT_MAX_LENGTH"):
        AnnouncementRules(max_length=TELEGRAM_MAX_LENGTH + 1)


def test_an_empty_audience_is_refused(actx: AnnouncementContext) -> None:
    empty = replace(actx, recipients={Audience.ENTRANTS: 3, Audience.NEWS_TELEGRAM: 0})
    before = run(drafted(empty), empty, (ADMIN, Text(PLAIN)))
    outcome = announce_step(before, ADMIN, Press("announce.audience.news_telegram"), empty)
    assert outcome.announcement == before
    assert outcome.replies[0].text.startswith(empty.texts.render("fr", "admin.announce.nobody"))


def test_silence_refuses_the_start_and_the_confirmation(actx: AnnouncementContext) -> None:
    silent = replace(actx, calendar=Calendar(silences=(SILENCE,)))
    refused = start(None, 17, ADMIN, silent)
    until = long_datetime(actx.texts, "fr", SILENCE.ends_at, actx.zone)
    said = actx.texts.render("fr", "admin.announce.silence", until=until)
    assert refused.announcement is None and refused.replies[0].text == said
    before = previewed(actx)
    outcome = announce_step(before, ADMIN, Press("announce.confirm"), silent)
    assert outcome.announcement == before and outcome.effects == ()


def test_a_second_admin_confirms_when_the_rule_applies(actx: AnnouncementContext) -> None:
    two = replace(actx, second_admin_required=True)
    asked = announce_step(previewed(two), ADMIN, Press("announce.confirm"), two)
    assert asked.announcement is not None
    assert asked.announcement.step == AnnouncementStep.AWAITING_SECOND_ADMIN
    shown = [e for e in asked.effects if isinstance(e, AskAdmins)]
    assert shown[0].reply.text == PLAIN and all(e.except_id == ADMIN for e in shown)
    assert not any(isinstance(e, QueueBroadcast) for e in asked.effects)

    same = announce_step(asked.announcement, ADMIN, Press("announce.confirm"), two)
    assert same.announcement == asked.announcement and same.effects == ()
    confirmed = announce_step(asked.announcement, OTHER, Press("announce.confirm"), two)
    assert confirmed.announcement is not None and confirmed.announcement.confirmed_by == OTHER
    assert QueueBroadcast("announce:17", Audience.ENTRANTS, PLAIN) in confirmed.effects


def test_cancel_while_sending_stops_the_batch(actx: AnnouncementContext) -> None:
    sending = run(previewed(actx), actx, (ADMIN, Press("announce.confirm")))
    outcome = announce_step(sending, OTHER, Press("announce.cancel"), actx)
    assert outcome.announcement is not None
    assert outcome.announcement.step == AnnouncementStep.CANCELLED
    assert outcome.effects[0] == CancelBroadcast("announce:17")
    assert isinstance(outcome.effects[1], Audit) and outcome.effects[1].action == "announce.cancel"
    again = announce_step(outcome.announcement, ADMIN, Press("announce.cancel"), actx)
    assert again.announcement == outcome.announcement and again.effects == ()


def test_a_draft_is_discarded_by_its_author_only(actx: AnnouncementContext) -> None:
    draft = previewed(actx)
    other = announce_step(draft, OTHER, Press("announce.cancel"), actx)
    assert other.announcement == draft
    assert announce_step(draft, OTHER, Press("announce.confirm"), actx).announcement == draft
    mine = announce_step(draft, ADMIN, Press("announce.cancel"), actx)
    assert mine.announcement is None and mine.effects == ()


@pytest.mark.parametrize(
    ("step_", "replaced"),
    [
        (AnnouncementStep.PREVIEW, True),
        (AnnouncementStep.SENT, True),
        (AnnouncementStep.CANCELLED, True),
        (AnnouncementStep.SENDING, False),
        (AnnouncementStep.AWAITING_SECOND_ADMIN, False),
    ],
)
def test_one_announcement_at_a_time(
    actx: AnnouncementContext, step_: AnnouncementStep, replaced: bool
) -> None:
    current = replace(previewed(actx), step=step_)
    outcome = start(current, 18, OTHER, actx)
    assert outcome.announcement is not None
    assert (outcome.announcement.number == 18) is replaced


@pytest.mark.parametrize(
    ("step_", "event"),
    [
        (AnnouncementStep.TEXT, Press("announce.confirm")),
        (AnnouncementStep.AUDIENCE, Text("autre")),
        (AnnouncementStep.AUDIENCE, Press("announce.audience.everyone")),
        (AnnouncementStep.PREVIEW, Text("autre")),
        (AnnouncementStep.SENDING, Press("announce.confirm")),
        (AnnouncementStep.SENT, Text("encore")),
    ],
)
def test_unexpected_input_changes_nothing(
    actx: AnnouncementContext, step_: AnnouncementStep, event: AnnouncementInput
) -> None:
    current = replace(previewed(actx), step=step_)
    outcome = announce_step(current, ADMIN, event, actx)
    assert outcome.announcement == current and outcome.effects == () and outcome.replies


def test_audiences_reach_entrants_or_news_on_telegram() -> None:
    news = Consent(ConsentKind.NEWS_TELEGRAM, "fr-v", NOW)
    entrant = entered(1)
    subscriber = replace(entrant, consents=(*entrant.consents, news))
    unconfirmed = entered(3, entry=None)
    assert in_audience(entrant, Audience.ENTRANTS) and in_audience(subscriber, Audience.ENTRANTS)
    assert not in_audience(unconfirmed, Audience.ENTRANTS)
    assert in_audience(subscriber, Audience.NEWS_TELEGRAM)
    assert not in_audience(entrant, Audience.NEWS_TELEGRAM)


def test_the_questionnaire_offers_news_on_telegram_apart(ctx: Context) -> None:
    person = step(entered(5), Command("engagement"), ctx).state
    person = step(person, Press("engage.actions_skip"), ctx).state
    shown = step(person, Press("news.news_telegram"), ctx)
    labels = [row[0].label for row in shown.replies[0].buttons]
    assert "☑ Nouvelles sur Telegram" in labels and "☐ Nouvelles par e-mail" in labels
    done = step(shown.state, Press("engage.news_done"), ctx)
    assert done.state.has_consented(ConsentKind.NEWS_TELEGRAM)
    assert not done.state.has_consented(ConsentKind.NEWS_EMAIL)
    assert done.effects == (RecordConsent(done.state.consents[-1]),)
    assert done.state.consents[-1].kind == ConsentKind.NEWS_TELEGRAM
    withdrawn = step(done.state, Command("desabonner"), ctx)
    assert withdrawn.effects == (WithdrawConsent(ConsentKind.NEWS_TELEGRAM, NOW),)


def test_news_by_email_reaches_entrants_who_agreed_to_it_by_email() -> None:
    by_email = Consent(ConsentKind.NEWS_EMAIL, "fr-v", NOW)
    entrant = entered(1)
    subscriber = replace(entrant, consents=(*entrant.consents, by_email))
    unconfirmed = replace(entered(3, entry=None), consents=(by_email,))
    assert in_audience(subscriber, Audience.NEWS_EMAIL)
    assert not in_audience(entrant, Audience.NEWS_EMAIL)
    assert not in_audience(unconfirmed, Audience.NEWS_EMAIL)
    assert channel_of(Audience.NEWS_EMAIL) == Channel.EMAIL
    assert {channel_of(a) for a in (Audience.ENTRANTS, Audience.NEWS_TELEGRAM)} == {
        Channel.TELEGRAM
    }


@pytest.mark.parametrize("busy", [AnnouncementStep.SENDING, AnnouncementStep.AWAITING_SECOND_ADMIN])
def test_a_new_announcement_while_one_is_busy_offers_to_cancel_it(
    actx: AnnouncementContext, busy: AnnouncementStep
) -> None:
    current = replace(previewed(actx), step=busy)
    outcome = start(current, 18, OTHER, actx)
    assert outcome.announcement == current and outcome.effects == ()
    [reply] = outcome.replies
    assert [button.key for row in reply.buttons for button in row] == ["announce.cancel:17"]


def _button(buttons: tuple[tuple[Button, ...], ...], prefix: str) -> Press:
    return Press(next(b.key for row in buttons for b in row if b.key.startswith(prefix)))


def test_a_button_of_an_earlier_announcement_acts_on_no_later_one(
    actx: AnnouncementContext,
) -> None:
    """The second admin approves the text they were shown: their « Send » under announcement
    17 (cancelled since) confirmed announcement 18, a text they never approved; an old
    « Cancel » stopped whatever was sending then."""
    two = replace(actx, second_admin_required=True)
    asked = announce_step(previewed(two), ADMIN, Press("announce.confirm"), two)
    [request] = [e for e in asked.effects if isinstance(e, AskAdmins) and e.reply.buttons]
    old_confirm = _button(request.reply.buttons, "announce.confirm")
    old_cancel = _button(request.reply.buttons, "announce.cancel")
    assert asked.announcement is not None
    cancelled = announce_step(asked.announcement, ADMIN, Press("announce.cancel"), two)
    assert cancelled.announcement is not None
    later = start(cancelled.announcement, 18, ADMIN, two).announcement
    assert later is not None
    later = run(later, two, (ADMIN, Text("Autre texte")),
                (ADMIN, Press("announce.audience.entrants")))  # fmt: skip
    later = announce_step(later, ADMIN, Press("announce.confirm"), two).announcement
    assert later is not None and later.step == AnnouncementStep.AWAITING_SECOND_ADMIN
    stale = announce_step(later, OTHER, old_confirm, two)
    assert stale.announcement == later and stale.effects == ()
    sending = announce_step(later, OTHER, Press(f"announce.confirm:{later.number}"), two)
    assert sending.announcement is not None
    assert sending.announcement.step == AnnouncementStep.SENDING
    kept = announce_step(sending.announcement, OTHER, old_cancel, two)
    assert kept.announcement == sending.announcement and kept.effects == ()
