"""The whole email loop, as people live it: through the bot and through the console."""

from __future__ import annotations

import asyncio
import json
import re
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from bot.settings import Settings
from tests.smtp_server import Inbox, body, smtp_server
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_console import SIGNUP, coffeebot
from tests.test_telegram import signup_updates


async def mail_to(inbox: Inbox, address: str) -> EmailMessage:
    for _ in range(500):
        if found := inbox.to(address):
            return found[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no email to {address}")


def confirmation_token(message: EmailMessage) -> str:
    match = re.search(r"\?start=c_([A-Za-z0-9_-]+)", body(message, "plain"))
    assert match is not None
    return match[1]


async def test_signup_email_link_questionnaire_and_invitation(settings: Settings) -> None:
    with smtp_server() as (inbox, port):
        settings = settings.replace(smtp_url=f"smtp://127.0.0.1:{port}", outbox_poll_seconds=0.05)
        api, updates = FakeBotApi(), Updates()
        zoe, lea = Updates.user(1001, "Zoé"), Updates.user(1002, "Léa")
        async with running_bot(settings, api) as bot:
            await bot.feed(*signup_updates(updates, zoe))
            token = confirmation_token(await mail_to(inbox, "Zoe.Martin+cafe@gmail.com"))
            await bot.feed(updates.text(zoe, f"/start c_{token}"))
            assert "vous participez au tirage" in api.texts_to(1001)[-2]
            await bot.feed(
                updates.press(zoe, "action.leaflets"),
                updates.press(zoe, "action.host_meeting"),
                updates.press(zoe, "engage.actions_done"),
                updates.press(zoe, "when.evenings"),
                updates.press(zoe, "engage.availability_done"),
                updates.press(zoe, "news.news_email"),
                updates.press(zoe, "engage.news_done"),
                updates.text(zoe, "/parrainer"),
            )
            invitation = await mail_to(inbox, "ami@orange.fr")
            link = re.search(r"start=r_([A-Za-z0-9_-]+)", api.texts_to(1001)[-1])
            assert link is not None and f"start=r_{link[1]}" in body(invitation, "plain")

            # Léa comes through Zoé's link, signs up and confirms with the typed code.
            lea_steps = signup_updates(updates, lea)
            lea_steps[0] = updates.text(lea, f"/start r_{link[1]}")
            lea_steps[8] = updates.text(lea, "07 81 22 33 44")
            lea_steps[9] = updates.text(lea, "lea@free.fr")
            await bot.feed(*lea_steps)
            code = re.search(r"\b(\d{6})\b", body(await mail_to(inbox, "lea@free.fr"), "plain"))
            assert code is not None
            await bot.feed(updates.text(lea, code[1]))
            # Different users run concurrently: Zoé asks once Léa's confirmation is in.
            await bot.feed(updates.text(zoe, "/statut"), updates.text(zoe, "/mesdonnees"))
            assert "vous participez au tirage" in api.texts_to(1002)[-2]
            assert "1 ami(s) ont rejoint" in api.texts_to(1001)[-3]

    data = json.loads(api.documents_to(1001)[0])
    signup = data["profile"]
    assert data["entry"]["email"] == "Zoe.Martin+cafe@gmail.com"
    assert signup["signup_step"] == "complete"
    assert signup["ways_to_help"] == ["host_meeting", "leaflets"]
    assert signup["availability"] == ["evenings"]
    assert signup["email_waiting_for_confirmation"] is None and token not in json.dumps(data)
    assert data["friends_you_invited"] == [] and signup["friends_invited_count"] == 1
    news = [c for c in data["consents"] if c["kind"].startswith("news")]
    assert [(c["kind"], c["withdrawn_at"]) for c in news] == [("news_email", None)]
    assert len(inbox.to("ami@orange.fr")) == 1 and len(inbox.to("Zoe.Martin+cafe@gmail.com")) == 1


def test_the_loop_through_the_console_with_the_eml_outbox(tmp_path: Path) -> None:
    outbox = {"MAIL_OUTBOX_DIR": str(tmp_path / "outbox")}
    first = coffeebot(
        tmp_path, "console", "--first-name", "Zoé", stdin="\n".join(SIGNUP) + "\n", env=outbox
    )
    assert first.returncode == 0, first.stderr
    assert "📧 Un e-mail de confirmation part vers zoe@gmail.com" in first.stdout
    written = {}
    for path in (tmp_path / "outbox").glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=default)
        written[str(message["To"])] = message
    assert set(written) == {"zoe@gmail.com"}  # friends are invited only once Zoé confirms
    code = re.search(r"\b(\d{6})\b", body(written["zoe@gmail.com"], "plain"))  # type: ignore[arg-type]
    assert code is not None
    second = coffeebot(
        tmp_path, "console", stdin=f"{code[1]}\n1\n7\n3\n1\n4\n/statut\n", env=outbox
    )
    assert second.returncode == 0, second.stderr
    assert "Adresse confirmée" in second.stdout and "Vous participez au tirage" in second.stdout
    invitations = [
        p for p in (tmp_path / "outbox").glob("*.eml") if b"ami@free.fr" in p.read_bytes()
    ]
    assert len(invitations) == 1
