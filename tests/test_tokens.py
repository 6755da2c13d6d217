"""The STS token model: parsing, table, used/old, TokenLockout with passed-in time, the account."""
import re

import pytest
from hypothesis import given, strategies as st

from rig.config_check import FileError
from rig.profile import load_profile
from rig.tokens import (
    DEFAULT_TABLE_PATH, Token, TokenError, TokenModel, TokenTableError, make_outcome,
)

S = 1_000_000_000
ACCEPT = "00123456789012345678"
WATER = "01234567890123456789"
EXAMPLE = "56746304125830196637"
CRC = "12345678901234567890"
EXPIRED = "11111111111111111111"
OLD = "22222222222222222222"
UNKNOWN = "00000000000000000042"


@pytest.fixture(scope="module")
def profile():
    return load_profile()


@pytest.fixture
def model(profile):
    return TokenModel.default(profile)


def status(profile, name):
    return next(c for c, n in profile.codes["tokenStatus"].items() if n == name)


# --- parsing -----------------------------------------------------------------------------------

def test_parse_gives_number_class_and_subclass():
    t = Token.parse(ACCEPT)
    assert t.number == 123456789012345678 and t.token_class == 0 and t.subclass == 0
    assert Token.parse(WATER).subclass == 1
    assert Token.parse(EXAMPLE).token_class == 3  # top 2 bits (assumed placement)
    top = Token.parse(str((1 << 66) - 1))
    assert top.token_class == 3 and top.subclass == 15


@pytest.mark.parametrize("text, says", [
    ("1234", "expected 20 digits, got 4"),
    ("", "expected 20 digits, got 0"),
    ("123456789012345678901", "expected 20 digits, got 21"),
    ("1234567890x234567890", "non-digit 'x' at position 11"),
    (" 2345678901234567890", "non-digit ' ' at position 1"),
    (str(1 << 66), "is not below 2**66"),
    ("99999999999999999999", "is not below 2**66"),
])
def test_parse_errors_name_the_token_and_what_is_wrong(text, says):
    with pytest.raises(TokenError) as e:
        Token.parse(text)
    assert repr(text) in str(e.value) and says in str(e.value)


def test_parse_refuses_non_strings():
    with pytest.raises(TokenError, match="expected a string"):
        Token.parse(12345678901234567890)


@given(st.integers(0, (1 << 66) - 1))
def test_any_66_bit_number_round_trips(n):
    t = Token.parse(f"{n:020d}")
    assert t.number == n and t.token_class == n >> 64 and t.subclass == (n >> 60) & 15


@given(st.text(max_size=25))
def test_parse_raises_only_token_error(text):
    try:
        Token.parse(text)
    except TokenError:
        pass


# --- table lookups -----------------------------------------------------------------------------

def test_default_table_holds_the_required_tokens(model, profile):
    assert model.table[EXAMPLE].outcome.accepted
    assert model.table[ACCEPT].outcome.accepted and model.table[ACCEPT].credit == 10
    names = {s.outcome.status_name for s in model.table.values()}
    assert {"Accept", "CRC error", "Key expired", "Old"} <= names
    assert DEFAULT_TABLE_PATH.is_file()


@pytest.mark.parametrize("text, name, auth, val, res", [
    (ACCEPT, "Accept", "Authentic", "Valid", "Accepted"),
    (CRC, "CRC error", "CRC error", "No token", "Rejected"),
    (EXPIRED, "Key expired", "Authentic", "Key expired", "Rejected"),
    (OLD, "Old", "Authentic", "Old", "Rejected"),
    (UNKNOWN, "CRC error", "CRC error", "No token", "Rejected"),  # the default
    ("9" * 20, "Format error", "Format error", "No token", "Rejected"),
    ("12", "Format error", "Format error", "No token", "Rejected"),
])
def test_outcomes_follow_table_default_and_format(model, profile, text, name, auth, val, res):
    o = model.enter(text, 0).outcome
    c = profile.codes
    assert (o.status_name, c["AuthenticationResult"][o.authentication], c["ValidationResult"][o.validation],
            c["TokenResult"][o.token_result]) == (name, auth, val, res)
    assert c["tokenStatus"][o.token_status] == name
    assert o.accepted == (name == "Accept")


def test_default_status_is_configurable(profile):
    m = TokenModel(profile, {}, default_status="Accept")
    assert m.enter(UNKNOWN, 0).outcome.accepted
    m = TokenModel(profile, {}, default_status=5)
    assert m.enter(UNKNOWN, 0).outcome.status_name == "Key type error"


def test_default_outcome_does_not_shadow_the_default_model(profile):
    # the default outcome was the instance attribute `default`, which hid the classmethod
    # TokenModel.default(profile) on every model: calling it there raised TypeError
    m = TokenModel(profile, {}, default_status="Accept")
    assert m.default_outcome.accepted
    shipped = m.default(profile)
    assert isinstance(shipped, TokenModel) and shipped.table and not shipped.default_outcome.accepted


def test_table_accepts_codes_overrides_and_plain_status(profile):
    m = TokenModel(profile, {UNKNOWN: {"status": 9, "validation": "Used"}, ACCEPT: "key expired"})
    assert m.table[UNKNOWN].outcome.status_name == "Old"
    assert profile.codes["ValidationResult"][m.table[UNKNOWN].outcome.validation] == "Used"
    assert m.table[ACCEPT].outcome.status_name == "Key expired"


@pytest.mark.parametrize("body, line, key, says", [
    ('[tokens."123"]\nstatus = "Accept"', 1, "tokens.123", "token '123': expected 20 digits"),
    (f'[tokens."{ACCEPT}"]\nstatus = "Great"', 2, f"tokens.{ACCEPT}.status",
     "'Great' is not in the profile's tokenStatus codes (expected one of: 0 "),
    (f'[tokens."{ACCEPT}"]\ncredit = 1', 1, f"tokens.{ACCEPT}.status", "missing (expected a tokenStatus name"),
    (f'[tokens."{ACCEPT}"]\nstatus = "Accept"\ncredit = -1', 3, f"tokens.{ACCEPT}.credit",
     "got -1 (expected a number >= 0)"),
    (f'[tokens."{ACCEPT}"]\nstatus = "Accept"\ntid = 16777216', 3, f"tokens.{ACCEPT}.tid",
     "got 16777216 (expected an integer 0..16777215)"),
    (f'[tokens."{ACCEPT}"]\nstatus = "Accept"\ncolour = 1', 3, f"tokens.{ACCEPT}.colour",
     "unknown key (expected one of: status, "),
    (f'[tokens."{ACCEPT}"]\nstatus = "Accept"\nresult = "Fine"', 3, f"tokens.{ACCEPT}.result",
     "'Fine' is not in the profile's TokenResult codes"),
    (f'[tokens."{ACCEPT}"]\nstatus = "Accept"\ndescription = 3', 3, f"tokens.{ACCEPT}.description",
     "got 3 (expected a string)"),
    (f'[tokens]\n"{ACCEPT}" = 5', 2, f"tokens.{ACCEPT}", "got 5 (expected a status, or a table with keys"),
    ('\ndefault_status = "Nope"', 2, "default_status", "'Nope' is not in the profile's tokenStatus codes"),
    ('tid_memory = 0', 1, "tid_memory", "got 0 (expected an integer >= 1)"),
    ('colour = 1', 1, "colour", "unknown key (expected one of: default_status, tid_memory, tokens)"),
    ('tokens = 3', 1, "tokens", "got 3 (expected a table of token -> entry)"),
    ('[tokens\nx', 1, None, "not valid TOML"),
])
def test_table_file_errors_name_file_and_key(tmp_path, profile, body, line, key, says):
    f = tmp_path / "tokens.toml"
    f.write_text(body)
    with pytest.raises(TokenTableError) as e:
        TokenModel.from_file(f, profile)
    where = f"{f}:{line}: " + (f"{key}: " if key else "")
    assert str(e.value).startswith(where + says), str(e.value)
    assert (e.value.path, e.value.line, e.value.key) == (str(f), line, key)


def test_token_table_error_names_file_line_and_key(tmp_path, profile):
    f = tmp_path / "mine.toml"
    f.write_text(f'# my tokens\ntid_memory = 5\n\n[tokens."{ACCEPT}"]\nstatus = "Accept"\ncredit = -2.5\n')
    with pytest.raises(FileError) as e:     # the one format of every user file
        TokenModel.from_file(f, profile)
    assert isinstance(e.value, TokenTableError) and isinstance(e.value, ValueError)
    assert str(e.value) == f"{f}:6: tokens.{ACCEPT}.credit: got -2.5 (expected a number >= 0)"
    assert (e.value.line, e.value.key, e.value.expected) == (6, f"tokens.{ACCEPT}.credit", "a number >= 0")


def test_table_given_in_code_names_its_source_and_key(profile):
    with pytest.raises(TokenTableError) as e:
        TokenModel(profile, {ACCEPT: {"status": "Accept", "tid": -1}}, source="case table")
    assert str(e.value) == f"case table: tokens.{ACCEPT}.tid: got -1 (expected an integer 0..16777215)"
    assert e.value.line is None
    with pytest.raises(TokenTableError, match=r"^token outcome: status: 'Great' is not in the profile's tokenStatus"):
        make_outcome(profile, "Great")


def test_missing_table_file_names_it(tmp_path, profile):
    f = tmp_path / "none.toml"
    with pytest.raises(TokenTableError, match=f"^{re.escape(str(f))}: cannot read"):
        TokenModel.from_file(f, profile)


def test_make_outcome_of_a_status_without_defaults_needs_all_three(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[codes.tokenStatus]\n17 = "Vendor special"\n')
    p = load_profile(f)
    with pytest.raises(TokenTableError, match="no default TCDU results"):
        make_outcome(p, "Vendor special")
    o = make_outcome(p, 17, authentication=1, validation=1, result="Rejected")
    assert o.token_status == 17 and not o.accepted


# --- used and old ------------------------------------------------------------------------------

def test_accepted_token_entered_again_is_used(model):
    assert model.enter(EXAMPLE, 0).outcome.accepted
    again = model.enter(EXAMPLE, 1)
    assert again.outcome.status_name == "Used" and not again.outcome.accepted
    assert again.credit == 0


def test_rejected_token_entered_again_is_the_same_reject(model):
    assert model.enter(EXPIRED, 0).outcome.status_name == "Key expired"
    assert model.enter(EXPIRED, 1).outcome.status_name == "Key expired"


def test_same_tid_is_used_and_tid_below_a_full_memory_is_old(profile):
    m = TokenModel(profile, {
        f"{i:020d}": {"status": "Accept", "tid": 100 + i} for i in range(1, 4)} | {
        f"{9:020d}": {"status": "Accept", "tid": 50},
        f"{8:020d}": {"status": "Accept", "tid": 102}}, tid_memory=2)
    assert m.enter(f"{1:020d}", 0).outcome.accepted
    assert m.enter(f"{9:020d}", 0).outcome.accepted  # memory not full yet: not old
    assert m.enter(f"{3:020d}", 0).outcome.accepted  # memory holds 101, 103 now
    e = m.enter(f"{9:020d}", 0)
    assert e.outcome.status_name == "Used"  # the same token text
    assert m.enter(f"{2:020d}", 0).outcome.accepted  # 102 >= oldest 101; memory now 102, 103
    e = m.enter(f"{8:020d}", 0)
    assert e.outcome.status_name == "Used" and "tid 102" in e.reason
    old = TokenModel(profile, {f"{7:020d}": {"status": "Accept", "tid": 1}}, tid_memory=2)
    old.tids = [101, 103]
    e = old.enter(f"{7:020d}", 0)
    assert e.outcome.status_name == "Old" and "below the oldest remembered 101" in e.reason


def test_used_memory_survives_power_cycle(model):
    model.enter(ACCEPT, 0)
    model.power_cycle()
    assert model.enter(ACCEPT, 1).outcome.status_name == "Used"


# --- TokenLockout ------------------------------------------------------------------------------

def reject(model, t):
    return model.enter(CRC, t)


def test_lockout_after_threshold_rejects_for_initial_period(model, profile):
    lk = profile.token_lockout
    assert (lk.threshold, lk.initial_period_ns, lk.factor, lk.max_period_ns) == (3, 10 * S, 2, 1280 * S)
    reject(model, 0)
    reject(model, 1 * S)
    assert not model.locked(2 * S)
    e = reject(model, 2 * S)
    assert "lockout 10000000000 ns" in e.reason
    assert model.locked(2 * S) and model.locked(12 * S - 1) and not model.locked(12 * S)
    locked = model.enter(ACCEPT, 5 * S)
    assert locked.outcome.status_name == "Token lockout active" and not locked.outcome.accepted
    assert model.lockout.rejects == 3  # not evaluated, not counted
    assert model.enter(ACCEPT, 12 * S).outcome.accepted  # not marked used while locked


def test_lockout_period_doubles_per_further_reject_up_to_max(model, profile):
    t, periods = 0, []
    for _ in range(12):
        reject(model, t)
        periods.append(model.lockout.remaining_ns(t))
        t += model.lockout.remaining_ns(t)
    assert periods[:2] == [0, 0]
    assert periods[2:] == [10 * S, 20 * S, 40 * S, 80 * S, 160 * S, 320 * S, 640 * S, 1280 * S, 1280 * S, 1280 * S]


def test_lockout_cleared_by_accept(model):
    for t in range(2):
        reject(model, t)
    assert model.enter(ACCEPT, 5).outcome.accepted
    assert model.lockout.rejects == 0
    reject(model, 6)
    reject(model, 7)
    assert not model.locked(8)


def test_lockout_cleared_by_power_cycle_and_uses_only_passed_in_time(model):
    for t in range(3):
        reject(model, t)
    assert model.locked(3)
    assert model.locked(10 * S - 1)  # no clock: time stands still unless passed in
    model.power_cycle()
    assert not model.locked(3) and model.lockout.rejects == 0
    assert model.enter(EXAMPLE, 4).outcome.accepted


def test_lockout_not_cleared_when_the_profile_says_so(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[token_lockout]\ncleared_by_power_cycle = false\ncleared_by_accept = false\n")
    m = TokenModel.default(load_profile(f))
    for t in range(3):
        reject(m, t)
    m.power_cycle()
    assert m.locked(3)
    assert m.enter(ACCEPT, 11 * S).outcome.accepted
    assert m.lockout.rejects == 3


def test_format_errors_and_used_count_as_rejects(model):
    model.enter(EXAMPLE, 0)
    model.enter(EXAMPLE, 1)  # used
    model.enter("123", 2)  # format error
    assert model.lockout.rejects == 2
    model.enter("x" * 20, 3)
    assert model.locked(3)


# --- the account -------------------------------------------------------------------------------

def test_account_records_every_entry_with_time_outcome_and_credit(model):
    seq = [(ACCEPT, 0), (ACCEPT, 1 * S), (WATER, 2 * S), (CRC, 3 * S), ("bad", 4 * S)]
    for text, t in seq:
        model.enter(text, t)
    assert [(e.seq, e.text, e.at_ns) for e in model.history] == [(i, x, t) for i, (x, t) in enumerate(seq)]
    assert [e.text for e in model.applied] == [ACCEPT, WATER]
    assert model.total_credit == 35.5
    acc = model.account()
    assert acc[ACCEPT] == {"entered": 2, "applied": 1, "credit": 10}
    assert acc[CRC] == {"entered": 1, "applied": 0, "credit": 0}
    assert model.applied_twice() == []
    assert "Used" in str(model.history[1])


@given(st.lists(st.tuples(st.sampled_from([ACCEPT, WATER, EXAMPLE, CRC, EXPIRED, OLD, UNKNOWN, "1", "9" * 20]),
                          st.integers(0, 5000 * S), st.booleans()), max_size=40))
def test_no_token_is_ever_applied_twice_or_lost(entries):
    m = TokenModel.default(load_profile())
    t = 0
    for text, dt, cycle in entries:
        t += dt // 100
        if cycle:
            m.power_cycle()
        m.enter(text, t)
    assert len(m.history) == len(entries)
    assert m.applied_twice() == []
    assert sum(r["applied"] for r in m.account().values()) == len(m.applied)
