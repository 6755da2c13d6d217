"""The fault campaign of benches/faults.py, short: every fault kind of the virtual line injected
into register reads and token transfers (the rig's Client against the meter emulator), each outcome
checked against the meter's own register values and token account. The bench runs 1000 per kind;
this runs a few dozen per kind through the same code (run_campaign / run_chunk)."""
import sys
from pathlib import Path

import pytest

from rig.link import FAULT_KINDS
from rig.protocol import Data, DataSet

PER_KIND = 24


def _bench():
    """benches/faults.py, imported as `faults` with benches/ on sys.path: its worker processes
    (spawned) import it by that name, and they inherit sys.path."""
    benches = str(Path(__file__).resolve().parents[1] / "benches")
    if benches not in sys.path:
        sys.path.insert(0, benches)
    import faults
    return faults


@pytest.fixture(scope="module")
def campaign():
    bench = _bench()
    totals = bench.run_campaign(tuple(FAULT_KINDS), PER_KIND, seed=13, workers=6, chunk=PER_KIND // 2,
                                log=lambda *a, **k: None)
    return bench, totals


def test_every_fault_kind_is_injected(campaign):
    bench, totals = campaign
    assert set(totals) == set(FAULT_KINDS)
    for kind, t in totals.items():
        assert t.injections == PER_KIND, (kind, t)
        assert t.reads and t.tokens, f"{kind}: both reads and token transfers are exercised"
        assert t.reads_ok + t.reads_failed == t.reads and t.tokens_ok + t.tokens_failed + t.unknown == t.tokens


@pytest.mark.parametrize("violation", ["lost", "twice", "wrong_value", "wrong_outcome", "hangs", "crashes", "account"])
def test_no_wrong_verdict_under_line_faults(campaign, violation):
    bench, totals = campaign
    bad = {k: getattr(t, violation) for k, t in totals.items() if getattr(t, violation)}
    examples = [e for t in totals.values() for e in t.examples
                if e["what"].replace(" ", "_") in (violation, violation.rstrip("s"))]
    assert not bad, f"{violation}: {bad}\n" + bench.table(totals) + "\n" + "\n".join(map(str, examples[:5]))


def test_the_campaign_sees_a_token_reported_wrongly():
    """The checker itself: a client that reports Used for a token the meter accepted is caught
    (lost and wrong outcome), a read answered with another register's value is caught."""
    bench = _bench()
    profile = bench.profile_for("scaled")
    token = "00000000000000000042"
    rig = bench.Rig(profile, {token: {"status": "Accept", "credit": 1.0}})
    try:
        entry = rig.tokens.enter(token, 0)
        used = rig.tokens.enter(token, 1)
        assert entry.outcome.accepted and not used.outcome.accepted

        class Told:  # what a client that repeated the write would have said
            status, status_name, accepted = used.outcome.token_status, used.outcome.status_name, False
            results = {"AuthenticationResult": (used.outcome.authentication, ""),
                       "ValidationResult": (used.outcome.validation, ""),
                       "TokenResult": (used.outcome.token_result, "")}
        t = bench.Tally("check")
        bench._check_token(t, rig, token, Told(), None, 0, {})
        assert (t.lost, t.wrong_outcome) == (1, 1)
        regs = rig.emulator.registers

        class Ex:
            answer, recovered = b"", []
        pv = profile.registers["protocolVersion"]
        bench._check_read(t, pv, (regs["softwareVersion"], Ex()), None, regs, regs, {}, profile)
        bench._check_read(t, pv, (regs["protocolVersion"], Ex()), None, regs, regs, {}, profile)
        assert t.wrong_value == 1
        # two equal characters dropped on the line: parity and BCC pass, the value fits FOIN
        foin = profile.registers["FOIN"]
        short = regs["FOIN"].replace("00", "", 1)

        class Blind:
            answer = bytes(Data.of(DataSet(foin.register_id, short)).to_bytes()[:-1]) + \
                Data.of(DataSet(foin.register_id, regs["FOIN"])).to_bytes()[-1:]
            recovered = []
        bench._check_read(t, foin, (short, Blind()), None, regs, regs, {}, profile)
        assert (t.wrong_value, t.bcc_blind) == (1, 1)
    finally:
        rig.close()


@pytest.mark.parametrize("execution_ms", [0, 400])
def test_nak_made_by_the_line_before_the_token_ack_gives_no_wrong_verdict(execution_ms):
    """The meter takes the token and ACKs it; noise puts a NAK (0x15, even parity) on the line just
    before that ACK. The client sees a NAK for its write. Whatever it does next, what it reports
    must agree with the meter's account: accepted, or "outcome unknown", never "rejected: Used"
    (execution 0: the second entry is Used) nor a plain failure (execution 400 ms: the second entry
    gets the error answer 'not ready')."""
    from rig._framing import add_parity
    from rig.client import ClientError
    from rig.link import Fault

    bench = _bench()
    profile = bench.profile_for("scaled")
    token = "00000000000000000042"
    rig = bench.Rig(profile, {token: {"status": "Accept", "credit": 1.0}}, execution_ms * 1_000_000)
    try:
        rig.client.identify()
        # the client reads tokenStatus before the write: the write's ACK comes after that answer
        ack_at = rig.line.sent("to_hhu") + len(Data.of(DataSet("04", rig.emulator.registers["tokenStatus"]))
                                                .to_bytes())
        rig.line.faults = [Fault("insert", "to_hhu", at=ack_at, data=add_parity(b"\x15"))]
        result, error = None, None
        try:
            result = rig.client.transfer_token(token)
        except ClientError as e:
            error = e
        rig.line.faults = []
        rig.drain()
        assert [e.outcome.status_name for e in rig.tokens.history][:1] == ["Accept"]
        t = bench.Tally("forged NAK")
        bench._check_token(t, rig, token, result, error, 0, {})
        assert (t.lost, t.wrong_outcome) == (0, 0), (result and result.outcome_text, error, t.examples)
    finally:
        rig.close()
