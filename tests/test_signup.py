"""The signup conversation as plain functions: every step, edits, cancel and resume."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.commands import new_participant
from conversations.model import (
    SIGNUP_CONSENTS,
    Area,
    Command,
    ConsentKind,
    Edited,
    ErasePersonalData,
    Input,
    Participant,
    Press,
    RecordConsent,
    SendPersonalData,
    SharedContact,
    Step,
    Text,
    Unsupported,
)
from conversations.policy import Context
from conversations.signup import step
from tests.conftest import NOW


def run(state: Participant, ctx: Context, *events: Input) -> Participant:
    for event in events:
        state = step(state, event, ctx).state
    return state


def fresh(ctx: Context) -> Participant:
    return new_participant(42, ctx.profile, NOW, ctx.texts)


TO_FIRST_NAME = (
    Press("welcome.join"),
    Press("consent.rules"),
    Press("consent.processing"),
    Press("consent.adult"),
    Press("consent.continue"),
)
ANSWERS = (
    Text("Zoé"),
    Text("Martin"),
    Text("06 12 34 56 78"),
    Text("zoe@orange.fr"),
    Text("69003"),
    Press("friends.done"),
    Press("question.skip"),
)


def at(step_name: Step, ctx: Context) -> Participant:
    """A participant who answered everything up to `step_name`."""
    state = fresh(ctx)
    for answer in (*TO_FIRST_NAME, *ANSWERS):
        if state.step == step_name:
            return state
        state = step(state, answer, ctx).state
    assert state.step == step_name
    return state


def test_a_whole_signup(ctx: Context) -> None:
    state = run(at(Step.SUMMARY, ctx), ctx, Press("summary.confirm"))
    assert state.step == Step.COMPLETE and state.completed_at == NOW
    assert (state.first_name, state.last_name, state.phone) == ("Zoé", "Martin", "+33612345678")
    assert (state.email, state.postcode, state.departement, state.area) == (
        "zoe@orange.fr",
        "69003",
        "69",
        Area.PROVINCE,
    )
    assert {consent.kind for consent in state.consents} == set(SIGNUP_CONSENTS)


@pytest.mark.parametrize(
    ("at_step", "answer", "field", "value", "next_step"),
    [
        (Step.FIRST_NAME, Text(" Jean-Pierre "), "first_name", "Jean-Pierre", Step.LAST_NAME),
        (Step.FIRST_NAME, Press("name.profile"), "first_name", "Zoé", Step.LAST_NAME),
        (Step.LAST_NAME, Press("name.profile"), "last_name", "Martin", Step.PHONE),
        (Step.LAST_NAME, Text("de La Fontaine"), "last_name", "de La Fontaine", Step.PHONE),
        (Step.PHONE, Text("0033612345678"), "phone", "+33612345678", Step.EMAIL),
        (
            Step.PHONE,
            SharedContact("33612345678", is_own=True),
            "phone",
            "+33612345678",
            Step.EMAIL,
        ),
        (Step.EMAIL, Text("Zoe@Orange.fr"), "email", "Zoe@orange.fr", Step.POSTCODE),
        (Step.POSTCODE, Text("20000"), "departement", "2A", Step.FRIENDS),
        (Step.FRIENDS, Press("friends.done"), "friends", (), Step.QUESTION),
        (Step.FRIENDS, Text("ami@free.fr"), "friends", ("ami@free.fr",), Step.FRIENDS),
        (Step.QUESTION, Text("Et l'école ?"), "question", "Et l'école ?", Step.SUMMARY),
        (Step.QUESTION, Press("question.skip"), "question", None, Step.SUMMARY),
    ],
)
def test_valid_answers(
    ctx: Context, at_step: Step, answer: Input, field: str, value: object, next_step: Step
) -> None:
    outcome = step(at(at_step, ctx), answer, ctx)
    assert getattr(outcome.state, field) == value
    assert outcome.state.step == next_step
    assert outcome.replies


@pytest.mark.parametrize(
    ("at_step", "answer", "says"),
    [
        (Step.WELCOME, Text("bonjour"), "boutons"),
        (Step.CONSENT, Text("oui"), "boutons"),
        (Step.CONSENT, Press("consent.continue"), "Les trois accords"),
        (Step.FIRST_NAME, Text("1234"), "chiffres"),
        (Step.FIRST_NAME, Text("https://spam.fr"), "lien"),
        (Step.FIRST_NAME, SharedContact("+33612345678", True), "message texte"),
        (Step.LAST_NAME, Text("<script>"), "pas «\u202f<\u202f»"),
        (Step.PHONE, Text("0612"), "ne semble pas valide"),
        (Step.PHONE, SharedContact("+33612345678", is_own=False), "votre propre numéro"),
        (Step.EMAIL, Text("zoe@"), "ne semble pas valide"),
        (Step.POSTCODE, Text("98000"), "réservée aux habitants de France"),
        (Step.POSTCODE, Text("750"), "5 chiffres"),
        (Step.FRIENDS, Text("pas une adresse"), "boutons"),
        (Step.FRIENDS, Text("zoe@orange.fr"), "votre propre adresse"),
        (Step.QUESTION, Text("x" * 501), "501 caractères"),
        (Step.SUMMARY, Text("ok"), "boutons"),
        (Step.PHONE, Text("x" * 1001), "trop long"),
        (Step.EMAIL, Unsupported(), "que du texte"),
        (Step.EMAIL, Edited(), "messages modifiés"),
        (Step.EMAIL, Press("summary.confirm"), "plus actif"),
        (Step.QUESTION, Command("inconnue"), "Je ne connais pas"),
    ],
)
def test_refusals_explain_and_change_nothing(
    ctx: Context, at_step: Step, answer: Input, says: str
) -> None:
    state = at(at_step, ctx)
    outcome = step(state, answer, ctx)
    assert outcome.state == state
    assert not outcome.effects
    assert says in outcome.replies[0].text


def test_consents_are_recorded_with_their_wording_version(ctx: Context) -> None:
    state = run(fresh(ctx), ctx, *TO_FIRST_NAME[:-1])
    outcome = step(state, Press("consent.continue"), ctx)
    recorded = [effect.consent for effect in outcome.effects if isinstance(effect, RecordConsent)]
    assert {consent.kind for consent in recorded} == set(SIGNUP_CONSENTS)
    assert all(
        consent.given_at == NOW and consent.version.startswith("fr-") for consent in recorded
    )
    assert len({consent.version for consent in recorded}) == len(recorded)


def test_the_rules_and_the_processing_are_two_separate_ticks(ctx: Context) -> None:
    shown = step(fresh(ctx), Press("welcome.join"), ctx).replies[0]
    keys = [button.key for row in shown.buttons for button in row]
    assert keys == ["consent.rules", "consent.processing", "consent.adult", "consent.continue"]
    # The processing's text names the data and says it reveals a political opinion.
    for named in ("prénom", "nom", "téléphone", "e-mail", "code postal", "question", "article 9"):
        assert named in shown.text, named
    for missing in ("consent.rules", "consent.processing", "consent.adult"):
        ticks = [key for key in TO_FIRST_NAME[1:-1] if key != Press(missing)]
        state = run(fresh(ctx), ctx, Press("welcome.join"), *ticks)
        refused = step(state, Press("consent.continue"), ctx)
        assert refused.state == state and not refused.effects, missing
        assert "Les trois accords" in refused.replies[0].text


def test_a_tick_saved_before_the_consents_were_separated_does_not_block(ctx: Context) -> None:
    # Someone who ticked the former bundled box, then the bot was updated: the three new
    # ticks are asked, and the old one neither counts nor blocks.
    state = replace(at(Step.CONSENT, ctx), consent_ticks=frozenset({ConsentKind.DRAW}))
    assert step(state, Press("consent.continue"), ctx).state.step == Step.CONSENT
    outcome = step(run(state, ctx, *TO_FIRST_NAME[1:-1]), Press("consent.continue"), ctx)
    assert outcome.state.step == Step.FIRST_NAME
    recorded = {e.consent.kind for e in outcome.effects if isinstance(e, RecordConsent)}
    assert recorded == set(SIGNUP_CONSENTS)


def test_a_consent_tick_can_be_taken_back(ctx: Context) -> None:
    state = run(
        fresh(ctx),
        ctx,
        Press("welcome.join"),
        Press("consent.rules"),
        Press("consent.processing"),
        Press("consent.processing"),
        Press("consent.adult"),
    )
    assert state.consent_ticks == {ConsentKind.RULES, ConsentKind.ADULT}
    assert step(state, Press("consent.continue"), ctx).state.step == Step.CONSENT


def test_a_likely_typo_in_the_email_domain_can_be_fixed_or_kept(ctx: Context) -> None:
    state = step(at(Step.EMAIL, ctx), Text("zoe@gmial.com"), ctx).state
    assert (state.step, state.pending_email) == (Step.EMAIL, "zoe@gmial.com")
    fixed = step(state, Press("email.fix"), ctx).state
    kept = step(state, Press("email.keep"), ctx).state
    assert (fixed.email, fixed.step, fixed.pending_email) == ("zoe@gmail.com", Step.POSTCODE, None)
    assert (kept.email, kept.step) == ("zoe@gmial.com", Step.POSTCODE)


def test_friends_are_checked_one_by_one(ctx: Context) -> None:
    state = at(Step.FRIENDS, ctx)
    for address in ("a@free.fr", "b@free.fr"):
        state = run(state, ctx, Press("friends.add"), Text(address))
    duplicate = step(run(state, ctx, Press("friends.add")), Text("A@free.fr"), ctx)
    assert "déjà dans la liste" in duplicate.replies[0].text
    state = run(state, ctx, Press("friends.add"), Text("c@free.fr"))
    assert state.friends == ("a@free.fr", "b@free.fr", "c@free.fr")
    full = step(state, Press("friends.add"), ctx)
    assert full.state == state and "déjà ajouté 3 amis" in full.replies[0].text
    assert "➕ Ajouter un ami" not in [
        b.label for row in step(state, Command("start"), ctx).replies[-1].buttons for b in row
    ]
    assert run(state, ctx, Press("friends.clear")).friends == ()


@pytest.mark.parametrize(
    ("edit", "answer", "field", "value"),
    [
        ("edit.first_name", Text("Léa"), "first_name", "Léa"),
        ("edit.last_name", Text("Durand"), "last_name", "Durand"),
        ("edit.phone", Text("+33 7 81 22 33 44"), "phone", "+33781223344"),
        ("edit.email", Text("lea@free.fr"), "email", "lea@free.fr"),
        ("edit.postcode", Text("75116"), "area", Area.PARIS),
        ("edit.question", Text("Et la santé ?"), "question", "Et la santé ?"),
    ],
)
def test_an_edit_from_the_summary_returns_to_the_summary(
    ctx: Context, edit: str, answer: Input, field: str, value: object
) -> None:
    state = run(at(Step.SUMMARY, ctx), ctx, Press(edit), answer)
    assert state.step == Step.SUMMARY and not state.editing
    assert getattr(state, field) == value


def test_friends_edited_from_the_summary(ctx: Context) -> None:
    state = run(
        at(Step.SUMMARY, ctx), ctx, Press("edit.friends"), Press("friends.add"), Text("x@free.fr")
    )
    assert state.step == Step.FRIENDS and state.editing
    state = run(state, ctx, Press("friends.done"))
    assert (state.step, state.friends) == (Step.SUMMARY, ("x@free.fr",))


def test_cancel_pauses_and_start_resumes_at_the_same_step(ctx: Context) -> None:
    state = at(Step.POSTCODE, ctx)
    paused = run(state, ctx, Command("annuler"))
    assert paused.paused and paused.step == Step.POSTCODE
    ignored = step(paused, Text("69003"), ctx)
    assert ignored.state == paused and "/start" in ignored.replies[0].text
    resumed = step(paused, Command("start"), ctx)
    assert not resumed.state.paused and resumed.state.step == Step.POSTCODE
    assert "Étape 6/8" in resumed.replies[-1].text
    assert run(state, ctx, Command("cancel")) == paused


def test_after_completion_start_and_status_show_the_status(ctx: Context) -> None:
    state = run(at(Step.SUMMARY, ctx), ctx, Press("summary.confirm"))
    for command in ("start", "statut", "status"):
        outcome = step(state, Command(command), ctx)
        assert outcome.state == state and "complète" in outcome.replies[-1].text


def test_modifier_reopens_the_summary_only_when_there_is_one(ctx: Context) -> None:
    complete = run(at(Step.SUMMARY, ctx), ctx, Press("summary.confirm"))
    reopened = run(
        complete,
        ctx,
        Command("modifier"),
        Press("edit.first_name"),
        Text("Léa"),
        Press("summary.confirm"),
    )
    assert (reopened.first_name, reopened.step, reopened.completed_at) == (
        "Léa",
        Step.COMPLETE,
        NOW,
    )
    early = step(at(Step.PHONE, ctx), Command("modifier"), ctx)
    assert early.state.step == Step.PHONE and "récapitulatif" in early.replies[0].text


def test_delete_asks_then_erases(ctx: Context) -> None:
    state = at(Step.SUMMARY, ctx)
    asked = step(state, Command("supprimer"), ctx)
    assert asked.state == state and not asked.effects
    kept = step(state, Press("erase.keep"), ctx)
    assert kept.state == state and not kept.effects
    erased = step(state, Press("erase.confirm"), ctx)
    assert erased.effects == (ErasePersonalData(),)
    assert erased.state == replace(fresh(ctx), created_at=NOW)


def test_mesdonnees_asks_the_shell_for_the_stored_data(ctx: Context) -> None:
    outcome = step(at(Step.EMAIL, ctx), Command("mesdonnees"), ctx)
    assert outcome.effects == (SendPersonalData(),)


def test_language_follows_the_profile_and_can_be_switched(ctx: Context) -> None:
    english = new_participant(7, replace(ctx.profile, language_code="en-GB"), NOW, ctx.texts)
    assert english.language == "en"
    assert (
        new_participant(7, replace(ctx.profile, language_code="de"), NOW, ctx.texts).language
        == "fr"
    )
    switched = step(at(Step.PHONE, ctx), Press("lang.en"), ctx)
    assert switched.state.language == "en" and "Step 4/8" in switched.replies[-1].text
    assert step(at(Step.PHONE, ctx), Press("lang.xx"), ctx).state.language == "fr"


def test_a_referral_is_kept_once_and_only_before_completion(ctx: Context) -> None:
    state = run(fresh(ctx), ctx, Command("start", "r_abc-DEF_1"), Command("start", "r_other"))
    assert state.referrer == "abc-DEF_1"
    assert run(fresh(ctx), ctx, Command("start", "r_" + "x" * 63)).referrer is None
    assert run(fresh(ctx), ctx, Command("start", "r_bad code")).referrer is None


def test_the_profile_name_is_offered_only_when_valid(ctx: Context) -> None:
    state = at(Step.FIRST_NAME, ctx)
    assert step(state, Command("start"), ctx).replies[-1].buttons[0][0].label == "Zoé"
    odd = replace(ctx, profile=replace(ctx.profile, first_name="🦄 42"))
    assert step(state, Command("start"), odd).replies[-1].buttons == ()
    assert step(state, Press("name.profile"), odd).state == state


# Hypothesis: anything at any step.

SIGNUP_STEPS = list(Step)[: list(Step).index(Step.SUMMARY) + 1]
STEPS = [s for s in SIGNUP_STEPS if s != Step.FRIEND_EMAIL]
KEYS = ["welcome.join", "consent.rules", "consent.processing", "consent.adult",
        "consent.continue", "consent.draw", "name.profile",
        "email.fix", "email.keep", "friends.add", "friends.clear", "friends.done",
        "friend_email.back",
        "question.skip", "summary.confirm", "edit.phone", "edit.friends", "lang.en", "lang.zz",
        "erase.keep", "", "x" * 64]  # fmt: skip
inputs = st.one_of(
    st.builds(Text, st.text(max_size=2000)),
    st.builds(Text, st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=80)),
    st.builds(Press, st.one_of(st.sampled_from(KEYS), st.text(max_size=70))),
    st.builds(SharedContact, st.text(max_size=40), st.booleans()),
    st.builds(
        Command,
        st.sampled_from(["start", "annuler", "aide", "statut", "modifier", "langue", "zzz"]),
        st.text(max_size=70),
    ),
    st.just(Unsupported()),
    st.just(Edited()),
)


@settings(
    max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(at_step=st.sampled_from(STEPS), event=inputs)
def test_any_input_at_any_step_never_raises(ctx: Context, at_step: Step, event: Input) -> None:
    state = at(at_step, ctx)
    outcome = step(state, event, ctx)
    assert outcome.replies
    if outcome.state != state:
        # Whatever changed, every stored answer still passes its own check.
        assert outcome.state.step in Step
        new = outcome.state
        assert new.first_name is None or 0 < len(new.first_name) <= 60
        assert new.phone is None or new.phone.startswith("+")
        assert len(new.friends) <= 3


@settings(
    max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    at_step=st.sampled_from(
        [Step.FIRST_NAME, Step.LAST_NAME, Step.PHONE, Step.EMAIL, Step.POSTCODE]
    ),
    text=st.text(max_size=300),
)
def test_a_refused_answer_leaves_the_state_unchanged(
    ctx: Context, at_step: Step, text: str
) -> None:
    state = at(at_step, ctx)
    outcome = step(state, Text(text), ctx)
    assert outcome.state == state or outcome.state.step != at_step or outcome.state.pending_email
