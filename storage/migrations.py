"""The schema, as ordered, described steps. Each runs in one transaction; never edit a
released step, add a new one. SQL here runs on SQLite and PostgreSQL alike, except where a
step gives each dialect its own form (`PerDialect`); every index and constraint is named the
same on both, so that errors are recognised by name (storage/constraints.py)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Dialect


@dataclass(frozen=True)
class PerDialect:
    """One statement written for each backend."""

    sqlite: str
    postgresql: str

    def text(self, dialect: Dialect) -> str:
        return self.sqlite if dialect is Dialect.SQLITE else self.postgresql


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str | PerDialect, ...]

    def sql(self, dialect: Dialect) -> list[str]:
        """The step's statements as the backend runs them."""
        return [s if isinstance(s, str) else s.text(dialect) for s in self.statements]


_ENTRIES_FROM_SIGNUPS = """INSERT INTO entries SELECT p.user_id, p.ticket, p.confirmed_email,
    p.phone, p.postcode, p.departement, p.area,
    {consents} FROM consents AS c WHERE c.user_id = p.user_id
        AND c.kind IN ('adult', 'draw') AND c.withdrawn_at IS NULL),
    p.confirmed_at, p.excluded_reason, p.updated_at
FROM participants AS p
WHERE p.ticket IS NOT NULL AND p.confirmed_email IS NOT NULL
    AND p.phone IS NOT NULL AND p.postcode IS NOT NULL AND p.area IS NOT NULL"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "participants with their friends and consents, processed updates, anonymous counts",
        (
            """CREATE TABLE participants (
                user_id BIGINT PRIMARY KEY,
                version INTEGER NOT NULL,
                language TEXT NOT NULL,
                step TEXT NOT NULL,
                paused SMALLINT NOT NULL,
                editing SMALLINT NOT NULL,
                consent_ticks TEXT NOT NULL,
                first_name TEXT,
                last_name TEXT,
                phone TEXT,
                email TEXT,
                pending_email TEXT,
                postcode TEXT,
                departement TEXT,
                area TEXT,
                question TEXT,
                referrer TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                completed_at TEXT
            )""",
            "CREATE UNIQUE INDEX participants_phone_key ON participants (phone)",
            "CREATE UNIQUE INDEX participants_email_key ON participants (lower(email))",
            """CREATE TABLE friends (
                user_id BIGINT NOT NULL REFERENCES participants (user_id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                email TEXT NOT NULL,
                PRIMARY KEY (user_id, position)
            )""",
            """CREATE TABLE consents (
                user_id BIGINT NOT NULL REFERENCES participants (user_id) ON DELETE CASCADE,
                kind TEXT NOT NULL,
                version TEXT NOT NULL,
                given_at TEXT NOT NULL,
                PRIMARY KEY (user_id, kind, version)
            )""",
            """CREATE TABLE processed_updates (
                update_id BIGINT PRIMARY KEY,
                processed_at TEXT NOT NULL
            )""",
            "CREATE INDEX processed_updates_time ON processed_updates (processed_at)",
            """CREATE TABLE anonymous_counts (
                name TEXT PRIMARY KEY,
                value INTEGER NOT NULL
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        2,
        "email confirmation, engagement, withdrawn consents, the outbox, keyed address hashes",
        (
            *(
                f"ALTER TABLE participants ADD COLUMN {column}"
                for column in (
                    "confirmation_token_hash TEXT",
                    "confirmation_code_hash TEXT",
                    "confirmation_expires_at TEXT",
                    "confirmed_email TEXT",
                    "confirmed_at TEXT",
                    "code_failures TEXT NOT NULL DEFAULT ''",
                    "confirmation_sends TEXT NOT NULL DEFAULT ''",
                    "referral_code TEXT",
                    "friends_invited INTEGER NOT NULL DEFAULT 0",
                    "actions TEXT NOT NULL DEFAULT ''",
                    "availability TEXT NOT NULL DEFAULT ''",
                )
            ),
            "CREATE UNIQUE INDEX participants_referral_code_key ON participants (referral_code)",
            "CREATE INDEX participants_referrer ON participants (referrer)",
            "ALTER TABLE consents ADD COLUMN withdrawn_at TEXT",
            # Recipient and parameters are erased once an email is sent or given up.
            """CREATE TABLE outbox (
                idempotency_key TEXT PRIMARY KEY,
                user_id BIGINT REFERENCES participants (user_id) ON DELETE CASCADE,
                kind TEXT NOT NULL,
                recipient TEXT,
                language TEXT NOT NULL,
                params TEXT,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                next_attempt_at TEXT NOT NULL,
                last_error TEXT,
                created_at TEXT NOT NULL,
                sent_at TEXT
            )""",
            "CREATE INDEX outbox_due ON outbox (status, next_attempt_at)",
            # Addresses invited or unsubscribed, as keyed hashes only.
            """CREATE TABLE address_hashes (
                hash TEXT NOT NULL,
                reason TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (hash, reason)
            )""",
            "CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        3,
        "draw tickets and exclusions, the draw and its places, the meeting, the audit log",
        (
            "ALTER TABLE participants ADD COLUMN ticket TEXT",
            "ALTER TABLE participants ADD COLUMN excluded_reason TEXT",
            "CREATE UNIQUE INDEX participants_ticket_key ON participants (ticket)",
            # One draw for the operation: its name is the key, so a second one cannot start.
            """CREATE TABLE draws (
                name TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                seed TEXT,
                commitment TEXT,
                winners INTEGER,
                reserves INTEGER,
                tickets TEXT,
                tickets_sha256 TEXT,
                requested_by BIGINT,
                certificate TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE draw_places (
                ticket TEXT PRIMARY KEY,
                rank INTEGER NOT NULL UNIQUE,
                role TEXT NOT NULL,
                status TEXT NOT NULL,
                user_id BIGINT REFERENCES participants (user_id) ON DELETE SET NULL,
                deadline TEXT,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX draw_places_user ON draw_places (user_id)",
            """CREATE TABLE meetings (
                name TEXT PRIMARY KEY,
                starts_at TEXT NOT NULL,
                details TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                reminded_at TEXT
            )""",
            """CREATE TABLE audit_log (
                at TEXT NOT NULL,
                admin_id BIGINT NOT NULL,
                action TEXT NOT NULL,
                details TEXT NOT NULL
            )""",
            "CREATE INDEX audit_log_at ON audit_log (at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        4,
        "entries apart from the profile, confirmations bound to their address, the operation",
        (
            # An entry is made when an address is first confirmed; editing the profile never
            # removes it. Confirmed addresses are unique among entries.
            """CREATE TABLE entries (
                user_id BIGINT PRIMARY KEY REFERENCES participants (user_id) ON DELETE CASCADE,
                ticket TEXT,
                email TEXT NOT NULL,
                phone TEXT NOT NULL,
                postcode TEXT NOT NULL,
                departement TEXT NOT NULL,
                area TEXT NOT NULL,
                consents TEXT NOT NULL,
                entered_at TEXT NOT NULL,
                excluded_reason TEXT,
                updated_at TEXT NOT NULL
            )""",
            "CREATE UNIQUE INDEX entries_ticket_key ON entries (ticket)",
            "CREATE UNIQUE INDEX entries_email_key ON entries (lower(email))",
            # Existing confirmed signups become entries, with the signup consents they gave.
            PerDialect(
                sqlite=_ENTRIES_FROM_SIGNUPS.format(
                    consents="(SELECT json_group_array(json_object("
                    "'kind', c.kind, 'version', c.version, 'given_at', c.given_at))"
                ),
                # The same JSON text as SQLite's, '[]' when there are none.
                postgresql=_ENTRIES_FROM_SIGNUPS.format(
                    consents="(SELECT COALESCE(json_agg(json_build_object("
                    "'kind', c.kind, 'version', c.version, 'given_at', c.given_at))::text, '[]')"
                ),
            ),
            "ALTER TABLE participants ADD COLUMN confirmation_address TEXT",
            "UPDATE participants SET confirmation_address = email"
            " WHERE confirmation_token_hash IS NOT NULL",
            "DROP INDEX participants_ticket_key",
            *(
                f"ALTER TABLE participants DROP COLUMN {column}"
                for column in ("ticket", "excluded_reason", "confirmed_email", "confirmed_at")
            ),
            # What admins did to the calendar: entries closed early by /draw.
            """CREATE TABLE operation (
                name TEXT PRIMARY KEY,
                entries_closed_at TEXT NOT NULL
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        5,
        "the Telegram outbox: messages to people, each sent once, rendered when sent",
        (
            # The key says what the message is for (`draw-result:{ticket}`): a second queueing
            # of the same message is a no-op, so nobody is told twice. The text is rendered
            # from the catalogue when sent; params (erased once the message is done with) hold
            # only the values to fill in.
            """CREATE TABLE telegram_outbox (
                idempotency_key TEXT PRIMARY KEY,
                user_id BIGINT NOT NULL REFERENCES participants (user_id) ON DELETE CASCADE,
                kind TEXT NOT NULL,
                language TEXT NOT NULL,
                text_key TEXT NOT NULL,
                params TEXT,
                buttons TEXT NOT NULL,
                campaign SMALLINT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                not_before TEXT NOT NULL,
                last_error TEXT,
                batch TEXT,
                created_at TEXT NOT NULL,
                sent_at TEXT
            )""",
            "CREATE INDEX telegram_outbox_due ON telegram_outbox (status, not_before)",
            "CREATE INDEX telegram_outbox_batch ON telegram_outbox (batch, status)",
            # An erasure deletes the person's messages through this index, not a table scan.
            "CREATE INDEX telegram_outbox_user ON telegram_outbox (user_id)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        6,
        "the draw's freeze, beacon, confirmation and addenda; the audit log as a hash chain",
        (
            "ALTER TABLE draws ADD COLUMN frozen_at TEXT",
            # JSON: what the beacon must be (source, not before), then its value once known.
            "ALTER TABLE draws ADD COLUMN beacon TEXT",
            "ALTER TABLE draws ADD COLUMN confirmed_by BIGINT",
            # JSON: the excluded tickets and their reason's category, as frozen.
            "ALTER TABLE draws ADD COLUMN excluded TEXT",
            # Entries written before this version have no seq and stay outside the chain.
            "ALTER TABLE audit_log ADD COLUMN seq INTEGER",
            "ALTER TABLE audit_log ADD COLUMN prev_hash TEXT",
            "ALTER TABLE audit_log ADD COLUMN hash TEXT",
            "CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq)",
            """CREATE TABLE draw_addenda (
                seq INTEGER PRIMARY KEY,
                record TEXT NOT NULL,
                created_at TEXT NOT NULL
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        7,
        "the travel entitlement of each place, frozen at the draw",
        (
            "ALTER TABLE draw_places ADD COLUMN area TEXT",
            "ALTER TABLE draw_places ADD COLUMN travel TEXT",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        8,
        "the replies of each processed update, kept until they have all left",
        (
            # JSON written in the step's own transaction: a webhook retry of an update whose
            # step was committed sends the replies that had not left yet, and only those.
            "ALTER TABLE processed_updates ADD COLUMN replies TEXT",
            "ALTER TABLE processed_updates ADD COLUMN replies_sent INTEGER NOT NULL DEFAULT 0",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        9,
        "uniqueness only where ownership is proven; counters that outlive erasure",
        (
            # A typed phone or address proves nothing: it no longer blocks anyone. A phone the
            # platform vouches for is unique; an address is unique among confirmed ones only,
            # compared by the mailbox it reaches (address_key), which the bot writes in Python
            # and fills in at start for the entries made before this version.
            "DROP INDEX participants_phone_key",
            "DROP INDEX participants_email_key",
            "ALTER TABLE participants ADD COLUMN phone_verified SMALLINT NOT NULL DEFAULT 0",
            "CREATE UNIQUE INDEX participants_verified_phone_key ON participants (phone)"
            " WHERE phone_verified = 1",
            "DROP INDEX entries_email_key",
            "ALTER TABLE entries ADD COLUMN address_key TEXT",
            "CREATE UNIQUE INDEX entries_address_key ON entries (address_key)",
            # Limits that outlive the people they count: a keyed hash of the subject (a mailbox,
            # an account, or '*' for everyone), its window's end, and a count. Nothing else.
            """CREATE TABLE quota_counts (
                quota TEXT NOT NULL,
                subject_hash TEXT NOT NULL,
                count INTEGER NOT NULL,
                expires_at TEXT NOT NULL,
                PRIMARY KEY (quota, subject_hash)
            )""",
            "CREATE INDEX quota_counts_expiry ON quota_counts (expires_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        10,
        "secrets apart from data: the hash key leaves the database; no address in last_error",
        (
            # The start moved the key to the key file before this step ran (bot/secret_key.py).
            "DROP TABLE secrets",
            # A check value of the key (an HMAC of a fixed text), never the key: a start with
            # another key (a wrong backup, a replica with its own key file) is refused rather
            # than silently making hashes that match none of the old ones.
            "CREATE TABLE secret_key_check (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            # Errors were kept as the server wrote them, recipient included; now only the SMTP
            # code and the error's class are.
            "UPDATE outbox SET last_error = NULL WHERE last_error IS NOT NULL",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        11,
        "travel expenses: each entitled winner's claim, its receipts and its payments",
        (
            # Name and postcode are copied when the expense opens: the mandataire's line must
            # outlive the participant's own row (campaign accounts are kept for years).
            """CREATE TABLE expenses (
                ticket TEXT PRIMARY KEY,
                user_id BIGINT,
                language TEXT NOT NULL,
                first_name TEXT NOT NULL,
                last_name TEXT NOT NULL,
                postcode TEXT NOT NULL,
                area TEXT NOT NULL,
                travel TEXT NOT NULL,
                step TEXT NOT NULL,
                claimed_cents BIGINT NOT NULL,
                claimed_at TEXT,
                version INTEGER NOT NULL,
                opened_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                -- The latest payment's moment: the mandataire's line is kept for
                -- EXPENSES_RETENTION_YEARS from it (storage/purge.py).
                last_paid_at TEXT
            )""",
            "CREATE UNIQUE INDEX expenses_user ON expenses (user_id)",
            # Telegram's ids of the file (to show it again) and its SHA-256 (what it was); the
            # file itself is kept only where EXPENSE_FILES_DIR says.
            """CREATE TABLE expense_receipts (
                ticket TEXT NOT NULL REFERENCES expenses (ticket) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                file_id TEXT,
                file_unique_id TEXT,
                sha256 TEXT NOT NULL,
                kind TEXT NOT NULL,
                size BIGINT NOT NULL,
                amount_cents BIGINT,
                received_at TEXT NOT NULL,
                PRIMARY KEY (ticket, position)
            )""",
            # A payment's number within its expense is its key: two admins (or one double tap)
            # recording "the next payment" at once record one.
            """CREATE TABLE expense_payments (
                ticket TEXT NOT NULL REFERENCES expenses (ticket) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                amount_cents BIGINT NOT NULL,
                reference TEXT,
                override_reason TEXT,
                admin_id BIGINT NOT NULL,
                paid_at TEXT NOT NULL,
                CONSTRAINT expense_payments_pkey PRIMARY KEY (ticket, seq)
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        12,
        "announcements to supporters, the chats that blocked the bot, email batches",
        (
            # One row per /annonce: its text, audience and step, who asked and who confirmed,
            # and its counts as last seen in the outboxes (kept once the outbox is purged).
            """CREATE TABLE announcements (
                number INTEGER PRIMARY KEY,
                version INTEGER NOT NULL,
                step TEXT NOT NULL,
                text TEXT NOT NULL,
                audience TEXT,
                channel TEXT,
                requested_by BIGINT NOT NULL,
                confirmed_by BIGINT,
                recipients INTEGER NOT NULL,
                queued INTEGER,
                sent INTEGER,
                blocked INTEGER,
                cancelled INTEGER,
                failed INTEGER,
                started_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            # Telegram answered Forbidden: no announcement goes to this chat until the person
            # writes to the bot again (their row's updated_at is then later than blocked_at).
            """CREATE TABLE telegram_blocked (
                user_id BIGINT PRIMARY KEY REFERENCES participants (user_id) ON DELETE CASCADE,
                blocked_at TEXT NOT NULL
            )""",
            # Emails sent as one batch (an announcement), for progress counts and cancelling.
            "ALTER TABLE outbox ADD COLUMN batch TEXT",
            "CREATE INDEX outbox_batch ON outbox (batch, status)",
            # The sender's query in its own order: with an announcement's whole batch pending,
            # each read of 100 due messages sorted every pending row (0.36 s at 200,000 rows on
            # SQLite, against 0.01 s with the order in the index).
            "DROP INDEX telegram_outbox_due",
            "CREATE INDEX telegram_outbox_due ON telegram_outbox"
            " (status, not_before, created_at, idempotency_key)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        13,
        "an index of the email outbox by person",
        (
            # Erasing a person (themselves, or the purge) finds their emails through it: without
            # it, each erasure scanned the whole outbox, and purging the 500 unfinished signups
            # of 50,000 participants took 7.1 s on SQLite instead of 0.24 s (bench.purge).
            "CREATE INDEX outbox_user ON outbox (user_id)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        14,
        "the Telegram outbox sends messages to one person first; ended places close expenses",
        (
            # A message queued for many people at once (an announcement, the draw's thanks to
            # everyone not drawn) is bulk: the sender takes every due message that is not
            # before any that is, so that a winner's notice, a reminder or a payment notice
            # queued during an announcement does not wait behind its whole batch.
            "ALTER TABLE telegram_outbox ADD COLUMN bulk SMALLINT NOT NULL DEFAULT 0",
            "UPDATE telegram_outbox SET bulk = 1"
            " WHERE kind = 'announcement' OR text_key = 'draw.result.not_drawn'",
            # The sender's query in its own order, bulk last.
            "DROP INDEX telegram_outbox_due",
            "CREATE INDEX telegram_outbox_due ON telegram_outbox"
            " (status, bulk, not_before, created_at, idempotency_key)",
            # A winner's place that ended (declined, deadline passed, replaced) closes their
            # travel expense: those that ended before this version are closed now.
            "UPDATE expenses SET step = 'closed', version = version + 1 WHERE ticket IN"
            " (SELECT ticket FROM draw_places WHERE status IN ('declined', 'expired', 'replaced'))",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        16,
        "a payment recorded by mistake is cancelled, not deleted",
        (
            # `/annuler_remboursement`: the payment stays listed with when, by whom and why it
            # was cancelled, and counts for nothing (the amount paid, the status, the
            # mandataire's line and `expenses.last_paid_at` leave it out).
            "ALTER TABLE expense_payments ADD COLUMN cancelled_at TEXT",
            "ALTER TABLE expense_payments ADD COLUMN cancelled_by BIGINT",
            "ALTER TABLE expense_payments ADD COLUMN cancel_reason TEXT",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        17,
        "the admins' free text in the audit log is erasable; the chain keeps its salted digest",
        (
            # A reason or a reference an admin typed may name a person: it sits beside the
            # entry, with the salt of the digest the chain hashes, and the purge (and the
            # erasure of the person whose ticket the entry is about) empties both. Entries
            # written before this version keep their text in `details`, which their hash covers.
            "ALTER TABLE audit_log ADD COLUMN ticket TEXT",
            "ALTER TABLE audit_log ADD COLUMN note TEXT",
            "ALTER TABLE audit_log ADD COLUMN note_salt TEXT",
            "ALTER TABLE audit_log ADD COLUMN note_digest TEXT",
            "CREATE INDEX audit_log_ticket ON audit_log (ticket)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        18,
        "a claim the mandataire decides not to pay is refused, and so closed",
        (
            # `/refuser_frais`: the expense closes (`step = 'closed'`, as when the place ends)
            # with when, by whom and why it was refused; /frais and the CSV say "refused".
            "ALTER TABLE expenses ADD COLUMN refused_at TEXT",
            "ALTER TABLE expenses ADD COLUMN refused_by BIGINT",
            "ALTER TABLE expenses ADD COLUMN refusal_reason TEXT",
        ),
    ),
)

LATEST_VERSION = max(migration.version for migration in MIGRATIONS)
