"""The rig profile: the shipped default, its sources, user overrides and the errors they get."""
import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from rig.profile import DEFAULT_PATH, Profile, ProfileError, Register, load_profile

MS = 1_000_000
TEN_REGISTERS = ("tableID", "FOIN", "protocolVersion", "serverStatus", "tokenStatus",
                 "softwareVersion", "TokenData", "AuthenticationResult", "ValidationResult",
                 "TokenResult")


@pytest.fixture(scope="module")
def default() -> Profile:
    return load_profile()


def write(tmp_path, text: str, name: str = "user.toml"):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return f


def leaves(d, prefix=""):
    """Dotted paths of every leaf value in to_dict(), skipping bookkeeping fields."""
    for k, v in d.items():
        if k in ("path", "sources") and not prefix or k in ("name", "source") and prefix.startswith("registers."):
            continue
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from leaves(v, key + ".")
        else:
            yield key


# --- the shipped default -----------------------------------------------------------------------

def test_every_default_value_has_a_standard_or_assumed_source(default):
    paths = list(leaves(default.to_dict()))
    assert len(paths) > 100
    for path in paths:
        assert re.fullmatch(r"IEC 62056-21 §\S.*|assumed", default.source(path)), path
    assert not any("62055" in s for s in default.sources.values())  # never attributed to 62055-52


def test_default_timing_matches_iec_62056_21(default):
    t = default.timing
    assert (t.tr_min_ns, t.tr_max_ns, t.tr_min_fast_ns) == (200 * MS, 1500 * MS, 20 * MS)
    assert t.ta_ns == 1500 * MS
    assert (t.tt_min_ns, t.tt_max_ns) == (1500 * MS, 2200 * MS)
    for key in ("timing.tr_min", "timing.tr_max", "timing.tr_min_fast", "timing.ta",
                "timing.tt_min", "timing.tt_max"):
        assert default.source(key) == "IEC 62056-21 §6.4"
    assert default.source("timing.ta_ms") == default.source("timing.ta_ns") == "IEC 62056-21 §6.4"
    assert t.tr_min_for("RIG") == 200 * MS and t.tr_min_for("RIg") == 20 * MS


def test_default_character_and_baud_characters(default):
    c = default.character
    assert (c.format, c.initial_baud, c.max_baud) == ("7E1", 300, 9600)
    assert c.baud_chars_mode_c == {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}
    assert c.baud_chars_mode_b == {"A": 600, "B": 1200, "C": 2400, "D": 4800, "E": 9600, "F": 19200}
    assert default.baud_from_char("5") == 9600 and default.baud_from_char("E") == 9600
    assert default.baud_char(19200) == "6" and default.baud_char(19200, mode="B") == "F"
    with pytest.raises(ValueError):
        default.baud_from_char("9")
    assert default.source("character.max_baud") == "assumed"


def test_default_scalars(default):
    assert default.protocol.nak_repeats == 3 and default.protocol.bcc_on_data is True
    assert default.protocol.undefined_command in ("nak", "error")
    lim = default.limits
    assert (lim.device_address_max, lim.identification_max, lim.address_max, lim.value_max,
            lim.value_max_programming, lim.unit_max, lim.error_text_max, lim.frame_max) == (
        32, 16, 16, 32, 128, 16, 32, 4096)
    assert default.source("limits.frame_max") == "assumed"
    ident = default.identification
    assert ident.manufacturer == "RIG" and default.baud_from_char(ident.baud_char) == default.character.max_baud
    assert len(ident.text) <= lim.identification_max
    assert {"unknown_register", "access_denied", "bad_length", "not_ready", "lockout"} <= set(default.error_texts)
    assert all(len(t) <= lim.error_text_max for t in default.error_texts.values())
    lo = default.token_lockout
    assert (lo.threshold, lo.initial_period_ns, lo.factor, lo.max_period_ns) == (3, 10_000 * MS, 2, 1_280_000 * MS)
    assert [lo.period_ns(n) // 1000 // MS for n in (2, 3, 4, 10, 11)] == [0, 10, 20, 1280, 1280]
    assert default.packing and default.interface.option == "optical"


def test_register_table_has_the_ten_named_registers_with_unique_ids(default):
    regs = default.registers
    assert set(TEN_REGISTERS) <= set(regs)
    ids = [r.register_id for r in regs.values()]
    assert len(ids) == len(set(ids))
    for name in TEN_REGISTERS:
        r = regs[name]
        assert isinstance(r, Register) and r.name == name and r.source == "assumed"
        assert default.register_by_id(r.register_id) is r
        assert r.access in ("r", "w", "rw") and 1 <= r.length <= default.limits.value_max_programming
        if r.encoding == "code":
            assert r.codes in default.codes
    assert regs["TokenData"].encoding == "digits20" and regs["TokenData"].length == 20
    assert "w" in regs["TokenData"].access
    assert default.register_by_id("no such id") is None
    with pytest.raises(Exception):
        regs["tokenStatus"].length = 5  # frozen


def test_code_tables(default):
    assert set(default.codes) == {"tokenStatus", "AuthenticationResult", "ValidationResult", "TokenResult"}
    ts = default.codes["tokenStatus"]
    assert ts[1] == "Accept" and ts[15] == "Token lockout active" and ts[16] == "Not ready"
    assert sorted(ts) == list(range(0, 17)) and ts[0] == "No token yet"  # 0: what the emulator shows before any token
    assert default.source("codes.tokenStatus.1") == "assumed"


def test_to_dict_is_json(default):
    d = json.loads(json.dumps(default.to_dict()))
    assert d["timing"]["ta_ns"] == 1500 * MS and d["registers"]["tokenStatus"]["register_id"]
    assert d["path"] == str(DEFAULT_PATH)


# --- user profiles -----------------------------------------------------------------------------

def test_user_overrides_are_merged_and_recorded(tmp_path):
    f = write(tmp_path, """
[timing]
ta_ms = 1000
tr_min_ms = { value = 250, source = "IEC 62055-52 §6.7" }
[protocol]
undefined_command = "error"
[registers.tokenStatus]
register_id = "C.51"
[registers.myCounter]
register_id = "99"
access = "rw"
length = 8
encoding = "decimal"
[codes.tokenStatus]
17 = "Vendor specific"
""")
    p = load_profile(f)
    assert p.path == f
    assert p.timing.ta_ns == 1000 * MS and p.timing.tr_min_ns == 250 * MS
    assert p.source("timing.ta") == f"user profile {f}"
    assert p.source("timing.tr_min") == f"user profile {f}: IEC 62055-52 §6.7"
    assert p.protocol.undefined_command == "error"
    assert p.source("timing.tt_max") == "IEC 62056-21 §6.4"  # untouched values keep theirs
    ts = p.registers["tokenStatus"]
    assert ts.register_id == "C.51" and ts.length == 3 and p.register_by_id("C.51") is ts
    assert f"user profile {f}" in ts.source and "assumed" in ts.source
    mine = p.registers["myCounter"]
    assert (mine.access, mine.length, mine.codes, mine.description) == ("rw", 8, None, "")
    assert mine.source == f"user profile {f}"
    assert p.codes["tokenStatus"][17] == "Vendor specific" and p.codes["tokenStatus"][1] == "Accept"
    assert load_profile().timing.ta_ns == 1500 * MS  # the default is untouched


def test_a_user_can_copy_the_default_whole(tmp_path):
    f = write(tmp_path, DEFAULT_PATH.read_text(encoding="utf-8"))
    def values(p):  # everything but where it came from
        d = p.to_dict() | {"path": "", "sources": {}}
        return d | {"registers": {n: r | {"source": ""} for n, r in d["registers"].items()}}

    p = load_profile(f)
    assert values(p) == values(load_profile())
    assert p.source("timing.ta") == f"user profile {f}: IEC 62056-21 §6.4"


@pytest.mark.parametrize("body, key, expected", [
    ('[timing]\nta_ms = "fast"', "timing.ta_ms", "got 'fast' (expected an integer 1..60000 (milliseconds))"),
    ("[timing]\nta_ms = 1.5", "timing.ta_ms", "got 1.5 (expected an integer 1..60000 (milliseconds))"),
    ("[protocol]\nbcc_on_data = 1", "protocol.bcc_on_data", "got 1 (expected true or false)"),
    ('[character]\nformat = "8E1"', "character.format", "expected one of '7E1', '8N1'"),
    ('[registers.tokenStatus]\naccess = "read"', "registers.tokenStatus.access", "expected one of 'r', 'w', 'rw'"),
    ("timing = 5", "timing", "expected a table"),
])
def test_wrong_type_names_file_key_and_expectation(tmp_path, body, key, expected):
    f = write(tmp_path, body)
    with pytest.raises(ProfileError) as e:
        load_profile(f)
    msg = str(e.value)
    assert str(f) in msg and f"{key}:" in msg and expected in msg, msg


@pytest.mark.parametrize("body, key, expected", [
    ("[timing]\nta_mss = 1000", "timing.ta_mss", "expected one of: tr_min_ms"),
    ("[timings]\nta_ms = 1000", "timings", "expected one of: packing, interface"),
    ("[registers.tokenStatus]\nwidth = 3", "registers.tokenStatus.width", "expected one of: register_id"),
    ('[error_texts]\nbusy = "busy"', "error_texts.busy", "expected one of: unknown_register"),
    ("[timing]\nta_ms = { value = 1000, note = 'x' }", "timing.ta_ms", "expected { value = ..., source"),
])
def test_unknown_key_names_file_key_and_expectation(tmp_path, body, key, expected):
    f = write(tmp_path, body)
    with pytest.raises(ProfileError) as e:
        load_profile(f)
    msg = str(e.value)
    assert str(f) in msg and f"{key}:" in msg and expected in msg, msg


@pytest.mark.parametrize("body, key, expected", [
    ("[timing]\nta_ms = 0", "timing.ta_ms", "got 0 (expected an integer 1..60000 (milliseconds))"),
    ("[timing]\nta_ms = 60001", "timing.ta_ms", "got 60001 (expected an integer 1..60000 (milliseconds))"),
    ("[character]\nmax_baud = 14400", "character.max_baud", "expected one of 300, 600"),
    ('[identification]\nmanufacturer = "RIGS"', "identification.manufacturer", "3..3 characters (letters)"),
    ('[identification]\ntext = "a text of 17 chars"', "identification.text", "1..16 characters"),
    ("[limits]\nidentification_max = 8", "identification.text", "1..8 characters"),  # limit applies
    ('[error_texts]\nlockout = "locked (busy)"', "error_texts.lockout", "no ( ) * / !"),
    ("[timing]\ntr_min_ms = 2000", "timing.tr_min_ms", "got 2000 (expected at most timing.tr_max_ms = 1500)"),
    ("[timing]\ntr_max_ms = 100", "timing.tr_max_ms", "got 100 (expected at least timing.tr_min_ms = 200)"),
    ("[character]\nmax_baud = 19200", "character.max_baud", "identification.baud_char = '5'"),
    ('[identification]\nbaud_char = "6"', "identification.baud_char", "character.max_baud = 9600"),
    ("[registers.TokenData]\nlength = 16", "registers.TokenData.length", "20 for encoding 'digits20'"),
    ('[registers.tokenStatus]\ncodes = "nope"', "registers.tokenStatus.codes", "a code table"),
    ('[registers.tokenStatus]\nencoding = "decimal"', "registers.tokenStatus.encoding", '"" (no code table)'),
    ('[registers.mine]\nregister_id = "04"\naccess = "r"\nlength = 1\nencoding = "ascii"',
     "registers.mine.register_id", "not used by another register (registers.tokenStatus.register_id"),
    ('[registers.mine]\nregister_id = "77"\naccess = "r"', "registers.mine.length", "missing (expected an integer 1..128 (characters))"),
    ('[codes.tokenStatus]\n1000 = "x"', "codes.tokenStatus.1000", "a code number 0..999"),
])
def test_out_of_range_names_file_key_and_expectation(tmp_path, body, key, expected):
    f = write(tmp_path, body)
    with pytest.raises(ProfileError) as e:
        load_profile(f)
    msg = str(e.value)
    assert str(f) in msg and f"{key}:" in msg and expected in msg, msg


def test_clearing_a_code_table_makes_a_code_register_plain(tmp_path):
    f = write(tmp_path, '[registers.tokenStatus]\nencoding = "decimal"\ncodes = ""')
    r = load_profile(f).registers["tokenStatus"]
    assert (r.encoding, r.codes) == ("decimal", None)


def test_malformed_toml_names_file_and_line(tmp_path):
    f = write(tmp_path, "[timing]\nta_ms = 1000\ntt_max_ms = = 5\n")
    with pytest.raises(ProfileError) as e:
        load_profile(f)
    assert str(f) in str(e.value) and "line 3" in str(e.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ProfileError, match=re.escape(str(tmp_path / "absent.toml"))):
        load_profile(tmp_path / "absent.toml")


@settings(max_examples=25)
@given(st.integers(min_value=200, max_value=1500))
def test_any_tr_max_in_range_round_trips_to_nanoseconds(tmp_path_factory, ms):
    f = tmp_path_factory.mktemp("p") / "u.toml"
    f.write_text(f"[timing]\ntr_max_ms = {ms}\n")
    assert load_profile(f).timing.tr_max_ns == ms * MS


# --- the one error format: file, line, key, what is wrong, what was expected ------------------

def test_profile_errors_name_the_line_as_plan_errors_do(tmp_path):
    f = write(tmp_path, '# mine\n[timing]\nta_ms = 1000\n\n[registers.tokenStatus]\naccess = "read"\n')
    with pytest.raises(ProfileError) as e:
        load_profile(f)
    assert str(e.value) == f"{f}:6: registers.tokenStatus.access: got 'read' (expected one of 'r', 'w', 'rw')"
    assert (e.value.path, e.value.line, e.value.key) == (f, 6, "registers.tokenStatus.access")
    # a rule across keys blames the user's key, at its line
    f = write(tmp_path, "[timing]\ntt_max_ms = 1000\n")
    with pytest.raises(ProfileError, match=re.escape(f"{f}:2: timing.tt_max_ms: got 1000 (expected at least")):
        load_profile(f)


def test_overrides_are_merged_over_the_profile_file_without_a_file_of_their_own(tmp_path):
    from rig.config_check import Checker
    f = write(tmp_path, "[timing]\nta_ms = 1000\n")
    plan_text = 'name = "p"\n[profile.timing]\ntr_max_ms = "slow"\n'
    where = Checker("p.toml", plan_text, prefix=("profile",), error=ProfileError)
    p = load_profile(f, overrides={"timing": {"tr_max_ms": 1200}}, overrides_from=where,
                     overrides_label="plan p.toml [profile]")
    assert p.timing.ta_ns == 1000 * MS and p.timing.tr_max_ns == 1200 * MS
    assert p.source("timing.ta") == f"user profile {f}" and p.source("timing.tr_max") == "plan p.toml [profile]"
    with pytest.raises(ProfileError) as e:
        load_profile(f, overrides={"timing": {"tr_max_ms": "slow"}}, overrides_from=where)
    assert str(e.value) == "p.toml:3: profile.timing.tr_max_ms: got 'slow' (expected an integer 1..60000 (milliseconds))"


TRICKY = 'say "hi" \\ to Zürich ÅÆ €'


def test_profile_written_with_a_quote_in_a_value_reads_back(tmp_path):
    # quotes, backslashes and non-ASCII, written by tomli-w as a profile and as a plan's [profile]
    # overrides, read back unchanged (the old hand-made writer lost the plan's overrides to a temp file)
    import tomli_w

    from rig.campaign.plan import PlanError, load_plan
    from rig.campaign.profiles import profile_for_plan
    prof = {"registers": {"tokenStatus": {"description": TRICKY}}, "emulator": {"password": 'p"w\\d'}}
    f = tmp_path / "mine.toml"
    f.write_text(tomli_w.dumps(prof), encoding="utf-8")
    p = load_profile(f)
    assert p.registers["tokenStatus"].description == TRICKY and p.emulator.password == 'p"w\\d'
    plan = tmp_path / "plan.toml"
    plan.write_text(tomli_w.dumps({"name": "q", "profile": prof, "case": [{"use": "meter/6.6/read"}]}),
                    encoding="utf-8")
    p = profile_for_plan(load_plan(plan))
    assert p.registers["tokenStatus"].description == TRICKY and p.emulator.password == 'p"w\\d'
    # a newline is refused by the schema, naming the plan's key, not as broken TOML
    plan.write_text(tomli_w.dumps({"name": "q", "profile": {"registers": {"tokenStatus": {"description": "a\nb"}}},
                                   "case": [{"use": "meter/6.6/read"}]}), encoding="utf-8")
    with pytest.raises(PlanError, match=r"plan.toml:\d+: profile.registers.tokenStatus.description: got 'a\\nb'"):
        load_plan(plan)
