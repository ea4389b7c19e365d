"""Runs one input through the conversation: load, step, save, then reply and act.

Callers serialise each user's inputs (the Telegram adapter does it in `PerUserProcessor`), so
the state is loaded after the user's lock is taken and nothing else writes it meanwhile; the
version guard in the store still refuses a stale write.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Protocol

from bot.kept_replies import KeptReplies, KeptStep, encode
from bot.logs import failure
from bot.personal_data import document, readable, summary
from bot.settings import Settings
from conversations.catalogue import Catalogue
from conversations.commands import new_participant
from conversations.model import (
    ErasePersonalData,
    Input,
    InviteFriends,
    Outcome,
    Participant,
    Profile,
    QueueEmail,
    Reply,
    SendPersonalData,
)
from conversations.phases import OperationState
from conversations.policy import Context
from conversations.prompts import refuse
from conversations.signup import step
from conversations.validators import Refusal
from storage.ports import ContactTaken, DuplicateUpdate, ParticipantStore, StaleWrite

log = logging.getLogger(__name__)

# Crockford's base32: no I, L, O or U, so a ticket read aloud or copied by hand stays right.
_TICKET_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ticket() -> str:
    """Ten characters, 50 random bits: short to read, and collisions are negligible."""
    return "".join(secrets.choice(_TICKET_ALPHABET) for _ in range(10))


class LazySecrets:
    """Each secret drawn from the OS the first time a step reads it, and kept for the step."""

    @cached_property
    def token(self) -> str:
        return secrets.token_urlsafe(16)

    @cached_property
    def code(self) -> str:
        return f"{secrets.randbelow(10**6):06d}"

    @cached_property
    def referral_code(self) -> str:
        return secrets.token_urlsafe(6)

    @cached_property
    def ticket(self) -> str:
        return new_ticket()


_SAVE_ATTEMPTS = 3


class Outbound(Protocol):
    """Where a conversation's replies go: a Telegram chat, a terminal, a test's recorder."""

    async def send(self, reply: Reply) -> None: ...

    async def send_document(self, filename: str, content: bytes, caption: str) -> None: ...


@dataclass(frozen=True)
class Incoming:
    user_id: int
    profile: Profile
    event: Input
    # The platform's id for the update, so that a redelivered update acts once.
    update_id: int | None = None


class ConversationService:
    def __init__(
        self,
        store: ParticipantStore,
        texts: Catalogue,
        settings: Settings,
        clock: Callable[[], datetime],
        bot_username: str,
        mail_queued: Callable[[], None],
        kept: KeptReplies | None = None,
        erased: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        # After an erasure's commit: what it deleted goes from the files too (WAL, .eml).
        self._erased = erased
        # With it, each step's replies are kept with its update id until they have left.
        self._kept = kept
        self._texts = texts
        self._limits = settings.limits
        self._travel = settings.travel
        self._calendar = settings.calendar
        self._zone = settings.zone
        self._clock = clock
        self._bot_username = bot_username
        self._mail_queued = mail_queued

    def _context(self, profile: Profile, operation: OperationState) -> Context:
        return Context(
            self._clock(),
            profile,
            self._texts,
            self._limits,
            self._travel,
            LazySecrets(),
            self._bot_username,
            self._calendar,
            operation,
            self._zone,
            hash_key=self._store.key,
        )

    async def handle(self, incoming: Incoming, outbound: Outbound) -> None:
        """Steps the person's conversation, commits it, then replies and carries out effects."""
        # In the person's turn: another process serving them waits until this one commits.
        redelivered = False
        async with self._store.serving(incoming.user_id) as store:
            state, operation = await store.load_for_step(incoming.user_id)
            ctx = self._context(incoming.profile, operation)
            for attempt in range(1, _SAVE_ATTEMPTS + 1):
                if attempt > 1:
                    state = await store.load(incoming.user_id)
                usage = await store.usage(state, incoming.user_id, ctx.now)
                ctx = replace(ctx, usage=usage)
                if state is None:
                    state = new_participant(
                        incoming.user_id, incoming.profile, ctx.now, self._texts
                    )
                outcome = self._step(state, incoming, ctx)
                try:
                    outcome = await self._commit(store, state, outcome, incoming.update_id, ctx)
                    break
                except DuplicateUpdate:
                    log.info("update %s already processed: not acted on again", incoming.update_id)
                    redelivered = True
                    break
                except StaleWrite:
                    log.warning("stale write for user %s (attempt %d)", incoming.user_id, attempt)
                    if attempt == _SAVE_ATTEMPTS:
                        raise
        if redelivered:
            # Out of the person's turn: what it kept back is read and advanced on its own.
            await self._send_kept(incoming, outbound, ctx)
            return
        if any(isinstance(effect, QueueEmail | InviteFriends) for effect in outcome.effects):
            self._mail_queued()
        await self._deliver(_kept_step(outcome), 0, incoming, outbound, ctx, outcome.state)
        if self._erased is not None and any(
            isinstance(effect, ErasePersonalData) for effect in outcome.effects
        ):
            # After the reply, which has no reason to wait for a bulk read in progress (an
            # export streaming) to let the WAL be emptied; and after the kept replies' own
            # writes, so that what they forget is scrubbed too.
            try:
                await self._erased()
            except Exception as error:  # the mail sender's sweep at the next start retries
                log.error("after user %s's erasure: %s", incoming.user_id, failure(error))

    async def _send_kept(self, incoming: Incoming, outbound: Outbound, ctx: Context) -> None:
        """Send what a redelivered update's committed step had not sent yet."""
        if self._kept is None or incoming.update_id is None:
            return
        kept = await self._kept.unsent(incoming.update_id)
        if kept is not None and kept[1] < kept[0].items:
            step, sent = kept
            log.info(
                "update %s: sending its %d unsent replies", incoming.update_id, step.items - sent
            )
            state = await self._store.load(incoming.user_id)
            await self._deliver(step, sent, incoming, outbound, ctx, state)

    async def _deliver(
        self,
        step: KeptStep,
        sent: int,
        incoming: Incoming,
        outbound: Outbound,
        ctx: Context,
        state: Participant | None,
    ) -> None:
        """Send the step's items from the `sent`th on, noting each one as it leaves."""
        for index in range(sent, step.items):
            if index < len(step.replies):
                await outbound.send(step.replies[index])
            elif state is not None:  # None: the person erased everything meanwhile
                await self._send_personal_data(state, ctx, outbound)
            if self._kept is not None and incoming.update_id is not None:
                await self._kept.sent(incoming.update_id, index + 1, index + 1 == step.items)

    def _step(self, state: Participant, incoming: Incoming, ctx: Context) -> Outcome:
        try:
            return step(state, incoming.event, ctx)
        except Exception as error:
            # The state is left as it was, so nothing the person gave before is lost.
            log.error(
                "step failed for user %s on %s: %s",
                incoming.user_id,
                type(incoming.event).__name__,
                failure(error),
            )
            return Outcome(state, (Reply(self._texts.render(state.language, "error.internal")),))

    async def _commit(
        self,
        store: ParticipantStore,
        state: Participant,
        outcome: Outcome,
        update_id: int | None,
        ctx: Context,
    ) -> Outcome:
        """Save what the step changed, or only note the update; return what to reply."""
        stored = [e for e in outcome.effects if not isinstance(e, SendPersonalData)]
        try:
            if outcome.state != state or stored:
                await store.save(
                    outcome.state,
                    state.version,
                    stored,
                    update_id,
                    ctx.now,
                    self._keep(outcome),
                    before=state,
                )
            elif update_id is not None or state.blocked:
                # A read-only command (/statut) from a person marked as having blocked the bot
                # says they no longer do: the mark goes, so that announcements reach them again.
                unblock = state.user_id if state.blocked else None
                await store.mark_processed(update_id, ctx.now, self._keep(outcome), unblock)
        except ContactTaken as taken:
            refusal = refuse(state, ctx, Refusal(f"refusal.{taken.field}.taken"))
            if update_id is not None:
                await store.mark_processed(update_id, ctx.now, self._keep(refusal))
            return refusal
        return outcome

    def _keep(self, outcome: Outcome) -> str | None:
        return encode(_kept_step(outcome)) if self._kept is not None else None

    async def _send_personal_data(
        self, state: Participant, ctx: Context, outbound: Outbound
    ) -> None:
        data = readable(self._texts, await self._store.export(state.user_id))
        await outbound.send(Reply(summary(self._texts, state, data)))
        caption = self._texts.render(state.language, "mydata.caption")
        await outbound.send_document(f"coffeebot-{state.user_id}.json", document(data), caption)

    async def warn_flood(self, user_id: int, profile: Profile, outbound: Outbound) -> None:
        """Tells a person who sends too much at once that they are ignored for a while."""
        state = await self._store.load(user_id)
        language = state.language if state else self._texts.language_for(profile.language_code)
        await outbound.send(Reply(self._texts.render(language, "error.flood")))


def _kept_step(outcome: Outcome) -> KeptStep:
    asked = any(isinstance(effect, SendPersonalData) for effect in outcome.effects)
    return KeptStep(outcome.replies, asked)
