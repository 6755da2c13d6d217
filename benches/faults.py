"""Fault campaign: every fault kind of the virtual line, injected into register reads and token
transfers of the rig's Client against the meter emulator, each outcome checked against the
meter's own state (its register values and its token account, rig/tokens.py).

What is counted, per fault kind (the first seven must be 0):
  lost          a token the meter accepted while the client reported it not accepted, or failed
                without saying "outcome unknown"
  twice         a token the meter applied more than once
  wrong value   a read reported as a success whose value is not the meter's value of the requested
                register (before or after the read: a token execution may end meanwhile), except
                the BCC-blind ones (counted apart): an answer with the requested register's
                address, good parity and BCC and a value that fits the register's definition,
                changed on the line in a way XOR cannot see (two equal characters dropped,
                inserted or duplicated). No IEC 62056-21 client can tell those from good answers.
  wrong outcome a token result (tokenStatus and the three TCDU results) the client reported that is
                not what the meter decided the first time it took the token (or a result for a
                token the meter never took)
  hangs         an operation that did not end within its deadline (the profile's worst case x 3)
  crashes       an exception other than ClientError out of the client, or a meter/line thread dead
  account check what rig.tokens.TransferAccount.check() finds wrong in the client's reports against
                the meter's account (a second opinion on lost and wrong outcome)
  unknown       "outcome unknown" token results, counted apart (with how many the meter applied)
plus what happened: reads/tokens that succeeded or failed, and sessions that could not be set up
again on a clean line afterwards (the meter deaf after a fault).

    python benches/faults.py                       # 1000 injections per kind, all kinds
    python benches/faults.py --count 40 --kinds drop,delay --seed 7 --workers 4
    python benches/faults.py --timing standard     # the default profile's timing (slower)

One injection = one operation with one fault: two reads in a row (random readable registers, the
fault at a random character of the first read, so that a stale or late answer to it would show in
the second) or a token transfer of a fresh token (the fault at a random character of it, 30 % of
the time on the TokenData write and its ACK); faults that hold for a while (baud_error, echo,
bit_flip at a bit error rate, a noise window) are active during the operation. Sessions are
identified on a clean line; after a failed operation the client signs off and identifies again.
Work is split into chunks run by worker processes, each with its own virtual line, meter and
client; their tallies are summed. Do not change the working tree while it runs: each chunk loads
the profile from disk.
The test suite runs a short version through run_chunk() (tests/test_fault_campaign.py).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

from rig import _clock
from rig._framing import add_parity
from rig.client import Client, ClientError, TokenResult
from rig.link import FAULT_KINDS, Fault, VirtualLine
from rig.profile import load_profile
from rig.server import MeterEmulator, MeterServer
from rig.tokens import TokenModel

try:
    from rig.tokens import TransferAccount  # issue 13's account of what the rig reported
except ImportError:
    TransferAccount = None

MS = 1_000_000
# whether Client.transfer_token reads tokenStatus before its write (issue 13's client does)
READS_FIRST = "before" in getattr(TokenResult, "__dataclass_fields__", {})
VIOLATIONS = ("lost", "twice", "wrong_value", "wrong_outcome", "hangs", "crashes", "account")

# Register values made distinct from each other and from the TCDU codes (0..16), so that the value
# of another register cannot pass for the one asked. Within the profile's lengths and encodings.
VALUES = {"tableID": "4321", "FOIN": "RIG0000000000001", "protocolVersion": "1.0",
          "serverStatus": "77777", "softwareVersion": "RIG-EMU 0.1"}
# What the bench's meter decides for its tokens (the rest of its table is generated per chunk).
REJECTS = ("Key expired", "CRC error", "Old", "Key type error", "Manufacturer code mismatch", "Range error")
ACCEPT_SHARE = 0.7

# The bench's changes to the default profile. "scaled": every time limit of a session scaled
# down about 5x (tr_max, ta, tt, command timeout 300 ms; a meter with a lower-case third letter,
# so tr_min is 20 ms), so one injection takes a fraction of a second; the protocol logic is the
# same. "standard": the default profile's IEC 62056-21 timing. Both: the lockout threshold out of reach (255 rejects in a row) so rejected tokens do not lock the
# meter, register values distinct from each other and from the TCDU codes.
TIMINGS = {
    "scaled": {"tr_max_ms": 300, "ta_ms": 300, "tt_min_ms": 300, "tt_max_ms": 440, "command_timeout_ms": 300,
               "execution_limit_ms": 3000, "not_ready_poll_ms": 50},
    "standard": {"not_ready_poll_ms": 200},
}
# Token execution times of the meter, one per chunk: 0 (done before the ACK), shorter than the
# command timeout (done by the time a client that lost the ACK asks), longer (it finds Not ready)
EXECUTION_MS = {"scaled": (0, 100, 400), "standard": (0, 500, 2000)}


def profile_text(timing: str, blocks: int = 0) -> str:
    values = ", ".join(f'{k} = "{v}"' for k, v in VALUES.items())
    lines = ["[identification]", 'manufacturer = "RIg"', 'text = "RIG FAULTS"',
             "[token_lockout]", "threshold = 255", "[timing]"]
    lines += [f"{k} = {v}" for k, v in TIMINGS[timing].items()]
    lines += ["[emulator]", f"execution_ms = {EXECUTION_MS[timing][-1]}", f"register_values = {{ {values} }}"]
    if blocks:
        lines += ['partial_answers = "always"', "[protocol]", f"block_size = {blocks}"]
    return "\n".join(lines) + "\n"


def profile_for(timing: str, blocks: int = 0):
    """The bench's profile; blocks > 0: the meter answers every read in partial blocks of that
    many data characters (EOT blocks, IEC 62056-21 §6.4.7), each ACKed by the client."""
    with tempfile.NamedTemporaryFile("w", suffix=f"-faults-{timing}.toml", delete=False) as f:
        f.write(profile_text(timing, blocks))
    try:
        return load_profile(f.name)
    finally:
        os.unlink(f.name)


# ---------------------------------------------------------------------------------------------
# The tally

@dataclass
class Tally:
    kind: str
    injections: int = 0
    reads: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    tokens: int = 0
    tokens_ok: int = 0             # a result reported (accepted or not)
    tokens_failed: int = 0         # ClientError without "outcome unknown"
    unknown: int = 0               # "outcome unknown"
    unknown_applied: int = 0       # ... of which the meter had applied the token
    lost: int = 0
    twice: int = 0
    wrong_value: int = 0
    wrong_outcome: int = 0
    hangs: int = 0
    crashes: int = 0
    account: int = 0               # TransferAccount.check(): wrong or applied-unreported reports
    bcc_blind: int = 0             # a corrupted value that parity, BCC and the register's definition all pass
    failed_entered: int = 0        # failed (not "unknown") while the meter had taken a rejected token
    resync_failures: int = 0       # a clean-line identification failed after an injection
    rebuilds: int = 0              # line, meter and client built anew (after a hang, crash or deaf meter)
    max_op_s: float = 0.0
    execution_ms: int = 0          # the meter's token execution time in this chunk
    seconds: float = 0.0
    examples: list = field(default_factory=list)

    def add(self, other: "Tally") -> None:
        for k, v in asdict(other).items():
            if k == "kind":
                continue
            if k == "execution_ms":
                continue
            if k == "max_op_s":
                self.max_op_s = max(self.max_op_s, v)
            elif k == "examples":
                self.examples.extend(v)
            else:
                setattr(self, k, getattr(self, k) + v)

    @property
    def violations(self) -> int:
        return sum(getattr(self, k) for k in VIOLATIONS)

    def example(self, what: str, **info) -> None:
        if sum(1 for e in self.examples if e["what"] == what) < 5:
            self.examples.append({"what": what, "kind": self.kind, **info})


# ---------------------------------------------------------------------------------------------
# Faults: one per injection, placed in the operation about to run

def _rand_insert(rng: random.Random) -> bytes:
    pool = b"\x01\x02\x03\x04\x06\x15\r\n/!()*" + bytes(range(0x30, 0x3A))
    data = add_parity(bytes(rng.choice(pool) for _ in range(rng.randint(1, 3))))
    if rng.random() < 0.2:
        data = bytes([data[0] ^ 0x80]) + data[1:]  # and one with bad parity
    return data


def make_fault(kind: str, rng: random.Random, *, direction: str, at: int, op_ns: int, char_ns: int,
               profile) -> Fault:
    """A fault of `kind` at character index `at` of `direction` (for the indexed kinds), or active
    during the operation (baud_error, echo, noise in a window of it, bit_flip at a bit error rate)."""
    t = profile.timing
    if kind == "bit_flip":
        if rng.random() < 0.3:
            return Fault(kind, direction, ber=rng.uniform(0.002, 0.01), seed=rng.randrange(1 << 30))
        return Fault(kind, direction, at=at, bit=rng.randrange(8))
    if kind == "parity":
        return Fault(kind, direction, at=at)
    if kind == "drop":
        return Fault(kind, direction, at=at, count=rng.randint(1, 3))
    if kind == "duplicate":
        return Fault(kind, direction, at=at, count=rng.randint(1, 2))
    if kind == "insert":
        return Fault(kind, direction, at=at, data=_rand_insert(rng))
    if kind == "truncate":
        return Fault(kind, direction, at=at)
    if kind == "delay":
        # under and over ta; at the first character of an answer, a late answer
        span = max(t.ta_ns, t.command_timeout_ns)
        return Fault(kind, direction, at=at, ns=int(rng.uniform(0.1, 1.6) * span))
    if kind == "break":
        return Fault(kind, direction, at=at, ns=int(rng.uniform(0.5, 40) * MS))
    if kind == "baud_error":
        return Fault(kind, direction, percent=rng.choice((-1, 1)) * rng.uniform(2.0, 10.0))
    if kind == "noise":
        return Fault(kind, direction, start_ns=_clock.now_ns() + rng.randrange(max(op_ns, 1)),
                     duration_ns=rng.randint(2, 20) * char_ns, ber=rng.uniform(0.02, 0.2),
                     seed=rng.randrange(1 << 30))
    if kind == "echo":
        return Fault(kind, direction)
    raise ValueError(f"fault kind {kind!r}: the bench has no way to inject it yet (add it to make_fault)")


# ---------------------------------------------------------------------------------------------
# The rig under test: a virtual line, the meter emulator on its meter side, the Client on the other

class Rig:
    def __init__(self, profile, table: dict, execution_ns: int | None = None):
        self.profile, self.table = profile, table
        self.tokens = TokenModel(profile, table, default_status="CRC error")
        self.line = VirtualLine().start()
        self.execution_ns = execution_ns
        self.emulator = MeterEmulator(profile, self.tokens, execution_ns=execution_ns)
        self.server = MeterServer(self.line.meter_port, profile, emulator=self.emulator).start()
        self.client = Client(self.line.hhu_port, profile)
        self.in_session = False
        self.seed = None
        self.last = None  # the last injection (op, fault), for the examples
        # the rig's own account of what it reported (issue 13's TransferAccount), checked against
        # the meter's at the end: a second opinion on the counts above
        self.reports = TransferAccount() if TransferAccount is not None else None

    def dead(self) -> str | None:
        for what, thing in (("meter server", self.server), ("virtual line", self.line)):
            if thing.error is not None:
                return f"{what} thread died: {type(thing.error).__name__}: {thing.error}"
        return None

    def close(self) -> None:
        for f in (self.client.close, self.server.stop, self.line.close):
            try:
                f()
            except Exception:
                pass

    def drain(self) -> None:
        """Wait until the line has delivered everything (a delayed character may still be on its
        way after the client gave up) and the meter has had the time to act on it."""
        rec = self.line.record()
        self.line.clear_record()
        last = max((r.t_end_ns for r in rec), default=0)
        _clock.sleep_until(max(_clock.now_ns(), last) + 20 * MS)

    def session(self, tally: Tally) -> bool:
        """An identified client on a clean line; False if three tries failed."""
        if self.in_session:
            return True
        for attempt in range(3):
            try:
                self.client.sign_off()
            except ClientError:
                pass
            if attempt:
                # a meter that lost track may need its inter-character timeout to end a frame
                _clock.sleep_until(_clock.now_ns() + self.profile.timing.ta_ns + 50 * MS)
            try:
                self.client.reader.discard()
                self.client.identify()
                self.in_session = True
                return True
            except ClientError as e:
                tally.resync_failures += 1
                tally.example("resync failure", error=str(e), attempt=attempt, after=self.last,
                              meter_state=self.emulator.state, meter_baud=self.emulator.baud,
                              meter_events=[ev for _, ev in list(self.emulator.events)[-6:]],
                              chunk_seed=self.seed)
        return False


def _deadline_s(profile) -> float:
    """Worst case of one operation (a token: a write, polls to the execution limit, four reads,
    each exchange with every repeat), times 3, plus slack for a loaded machine."""
    t, p = profile.timing, profile.protocol
    one = (p.nak_repeats + 2) * (t.command_timeout_ns + t.ta_ns + 200 * MS)
    return 3 * (6 * one + t.execution_limit_ns) / 1e9 + 10


def _run_with_deadline(fn, seconds: float):
    """(result, exception, its traceback, hung): fn() in a thread, abandoned if it outlives the deadline."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as e:  # reported by the caller, never lost
            box["error"] = e
            box["tb"] = traceback.format_exc()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(seconds)
    if th.is_alive():
        return None, None, "", True
    return box.get("result"), box.get("error"), box.get("tb", ""), False


def _describe(f: Fault) -> str:
    """A fault's fields that differ from their defaults."""
    default = {"at": None, "count": 1, "bit": None, "ber": 0.0, "data": b"", "ns": 0, "start_ns": None,
               "duration_ns": 0, "percent": 0.0}
    return " ".join([f.kind, f.direction] + [f"{k}={getattr(f, k)!r}" for k in default
                                             if getattr(f, k) != default[k]])


def _token_text(rng: random.Random) -> str:
    return f"{rng.randrange(1 << 66):020d}"


def _unknown(result) -> bool:
    """A token result the client says it cannot know (issue 13: "outcome unknown: acknowledgement
    lost"): TokenResult.outcome "unknown" with its reason."""
    return getattr(result, "outcome", None) == "unknown" and bool(getattr(result, "unknown_reason", ""))


def run_chunk(kind: str, count: int, seed: int, timing: str = "scaled", token_share: float = 0.5,
              blocks: int = 0, progress=None) -> Tally:
    """`count` injections of fault `kind`, on one line; returns the tally."""
    t_start = time.monotonic()
    profile = profile_for(timing, blocks)
    rng = random.Random(f"{seed}/{kind}")
    tally = Tally(kind)
    readable = [r for r in profile.registers.values() if "r" in r.access]
    deadline = _deadline_s(profile)

    # this chunk's tokens, each entered at most once by the bench (a fresh one per transfer)
    tokens = [_token_text(rng) for _ in range(count)]
    table = {tok: ("Accept" if rng.random() < ACCEPT_SHARE else rng.choice(REJECTS)) for tok in tokens}
    table = {tok: ({"status": s, "credit": 1.0} if s == "Accept" else {"status": s}) for tok, s in table.items()}
    tally.execution_ms = rng.choice(EXECUTION_MS[timing])
    rig = Rig(profile, table, tally.execution_ms * MS)
    rig.seed = seed
    next_token = iter(tokens)
    try:
        for i in range(count):
            if progress:
                progress(i)
            if (why := rig.dead()) is not None:
                tally.crashes += 1
                tally.example("crash", error=why)
                rig = _rebuild(rig, profile, tally)
            if not rig.session(tally):
                rig = _rebuild(rig, profile, tally)
                if not rig.session(tally):
                    tally.example("no session on a fresh rig", error="identification failed")
                    continue
            token_op = rng.random() < token_share
            c = rig.client
            char_ns = c.port.char_ns
            if token_op:
                token = next(next_token)
                # a write (30 characters) and its ACK, then ~5 reads of 10 and their answers; a
                # client that reads tokenStatus before the write has that read first
                status = rig.emulator.registers["tokenStatus"]
                pre_meter, pre_hhu = (10, 7 + len(status)) if READS_FIRST else (0, 0)
                n_meter, n_hhu = pre_meter + 30 + 50, pre_hhu + 1 + 5 * 8
                if rng.random() < 0.3:  # more often on the write and its ACK (a lost ACK)
                    n_meter, n_hhu = 30, 1
                else:
                    pre_meter = pre_hhu = 0
                op_ns = (n_meter + n_hhu) * char_ns + 6 * 60 * MS
                what = "token"
            else:
                # two reads in a row, the fault in the first: a stale or late answer to the first
                # must not pass for the second's
                regs = rng.sample(readable, 2)
                n_meter = 8 + len(regs[0].register_id)
                n_hhu = 5 + len(regs[0].register_id) + len(rig.emulator.registers[regs[0].name])
                op_ns = (n_meter + n_hhu) * char_ns + 60 * MS
                what = "read " + " ".join(r.name for r in regs)
            direction = rng.choice(("to_meter", "to_hhu"))
            n = n_meter if direction == "to_meter" else n_hhu
            at = rig.line.sent(direction) + rng.randrange(n)
            if token_op:
                at += pre_meter if direction == "to_meter" else pre_hhu
            fault = make_fault(kind, rng, direction=direction, at=at, op_ns=op_ns, char_ns=char_ns,
                               profile=profile)
            before = rig.emulator.registers
            history_len = len(rig.tokens.history)
            rig.line.faults = [fault]
            t0 = time.monotonic()
            if token_op:
                result, error, tb, hung = _run_with_deadline(lambda: c.transfer_token(token), deadline)
            else:
                result, error, tb, hung = _run_with_deadline(lambda: _read_all(c, regs), deadline)
            tally.max_op_s = max(tally.max_op_s, time.monotonic() - t0)
            rig.line.faults = []
            tally.injections += 1
            where = {"fault": _describe(fault), "i": i, "exec_ms": tally.execution_ms}
            rig.last = {"op": what, **where, "error": None if error is None else str(error)[:200]}
            if hung:
                tally.hangs += 1
                tally.example("hang", op=what, **where)
                rig = _rebuild(rig, profile, tally)
                continue
            if error is not None and not isinstance(error, ClientError):
                tally.crashes += 1
                tally.example("crash", op=what,
                              error=f"{type(error).__name__}: {error}", tb=tb[-1500:], **where)
            if error is not None or not token_op and any(e is not None for _, _, e in result):
                rig.in_session = False
            rig.drain()
            after = rig.emulator.registers
            if token_op:
                _check_token(tally, rig, token, result, error, history_len, where)
                _report(rig, token, result, error)
            else:
                for reg, res, err in (result or [(regs[0], None, error)]):
                    _check_read(tally, reg, res, err, before, after, where, profile)
        _settle_accounts(rig, tally)
    finally:
        rig.close()
    tally.seconds = time.monotonic() - t_start
    return tally


def _read_all(client: Client, regs) -> list:
    """(register, (value, exchange) or None, ClientError or None) per register, up to the first
    that fails (as `rig read` stops); any other exception goes out (a crash)."""
    out = []
    for reg in regs:
        try:
            out.append((reg, client.read(reg.name), None))
        except ClientError as e:
            out.append((reg, None, e))
            break
    return out


def _report(rig: Rig, token: str, result, error) -> None:
    """Record what the client told in the rig's TransferAccount."""
    if rig.reports is None:
        return
    told = getattr(error, "result", None) if error is not None else result
    outcome = getattr(told, "outcome", None)
    if outcome in ("accepted", "rejected", "unknown"):
        rig.reports.record(token, outcome, told.status, getattr(told, "unknown_reason", ""))
    else:
        rig.reports.record(token, "failed", None, str(error))


def _settle_accounts(rig: Rig, tally: Tally) -> None:
    """Tokens the meter applied twice, and TransferAccount.check() of the reports against the meter."""
    tally.twice += len(rig.tokens.applied_twice())
    if rig.reports is not None:
        found = rig.reports.check(rig.tokens)
        for what in ("wrong", "applied_unreported"):
            tally.account += len(found[what])
            for item in found[what][:3]:
                tally.example("account", check=what, item=str(item))


def _rebuild(rig: Rig, profile, tally: Tally) -> Rig:
    """A new line, meter and client (the old meter's account is checked first)."""
    _settle_accounts(rig, tally)
    rig.close()
    tally.rebuilds += 1
    return Rig(profile, rig.table, rig.execution_ns)


def fits(reg, value: str, profile) -> bool:
    """Whether a value could be one of the register's (its definition in the profile: length,
    characters, encoding): what a client can check beyond parity and BCC."""
    if len(value) > reg.length or not all(" " <= ch <= "~" for ch in value):
        return False
    if reg.encoding in ("decimal", "code", "digits20"):
        if not (value.isascii() and value.isdigit()):
            return False
        if reg.encoding == "digits20" and len(value) != 20:
            return False
        if reg.encoding == "code" and int(value) not in profile.codes.get(reg.codes or "", {}):
            return False
    return True


def bcc_blind(reg, value: str, answer: bytes, profile) -> bool:
    """A Data answer that differs from what the meter sent only in ways parity and BCC cannot
    show (e.g. two equal characters dropped, inserted or duplicated: their XOR is 0), carrying
    the requested register's address and a value that fits its definition. No IEC 62056-21
    client can tell it from a good answer."""
    from rig.protocol import Data
    try:
        ds = Data(answer.decode("ascii")[1:-2]).datasets
    except Exception:
        return False
    return (len(ds) == 1 and ds[0].address == reg.register_id and ds[0].value == value
            and fits(reg, value, profile) and _bcc_ok(answer))


def _bcc_ok(answer: bytes) -> bool:
    x = 0
    for b in answer[1:-1]:
        x ^= b
    return len(answer) > 2 and x == answer[-1]


def _check_read(tally: Tally, reg, result, error, before: dict, after: dict, where: dict,
                profile=None) -> None:
    name = reg.name
    tally.reads += 1
    if error is not None:
        tally.reads_failed += 1
        return
    value, ex = result
    tally.reads_ok += 1
    if value in (before[name], after[name]):
        return
    info = dict(register=name, value=value, meter=after[name], answer=ex.answer.decode("ascii", "replace"),
                recovered=list(ex.recovered), **where)
    if profile is not None and bcc_blind(reg, value, ex.answer, profile):
        tally.bcc_blind += 1
        tally.example("bcc blind", **info)
    else:
        tally.wrong_value += 1
        tally.example("wrong value", **info)


def _check_token(tally: Tally, rig: Rig, token: str, result, error, history_len: int, where: dict) -> None:
    """What the client told against what the meter did with the token (its account)."""
    tally.tokens += 1
    entries = [e for e in rig.tokens.history[history_len:] if e.text == token]
    applied = sum(1 for e in entries if e.outcome.accepted)
    meter = [str(e.outcome) for e in entries]
    first = entries[0].outcome if entries else None
    partial = getattr(error, "result", None)  # a ClientError may carry the result so far
    if error is not None and ("outcome unknown" in str(error).lower() or _unknown(partial)) \
            or error is None and _unknown(result):
        tally.unknown += 1
        tally.unknown_applied += bool(applied)
        return
    if error is not None:
        tally.tokens_failed += 1
        told = partial if partial is not None and getattr(partial, "outcome", "") in ("accepted", "rejected") else None
        if told is not None:  # the outcome was read, something after it failed
            if first is None or told.status != first.token_status:
                tally.wrong_outcome += 1
                tally.example("wrong outcome", token=token, client=f"{told.status_name} ({error})", meter=meter, **where)
            if applied and not told.accepted:
                tally.lost += 1
                tally.example("lost", token=token, client=f"{told.status_name} ({error})", meter=meter, **where)
        elif applied:
            tally.lost += 1
            tally.example("lost", token=token, error=str(error), meter=meter, **where)
        elif entries:
            tally.failed_entered += 1
        return
    tally.tokens_ok += 1
    got = (result.status, *(result.results.get(n, (None, ""))[0]
                            for n in ("AuthenticationResult", "ValidationResult", "TokenResult")))
    want = None if first is None else (first.token_status, first.authentication, first.validation,
                                       first.token_result)
    if got != want:
        tally.wrong_outcome += 1
        tally.example("wrong outcome", token=token, client=f"{result.status_name} {got}", meter=meter, **where)
    if applied and not result.accepted:
        tally.lost += 1
        tally.example("lost", token=token, client=result.status_name, meter=meter, **where)


# ---------------------------------------------------------------------------------------------
# The campaign: chunks in worker processes

def run_campaign(kinds, count: int, seed: int, *, timing: str = "scaled", workers: int = 4,
                 chunk: int = 100, token_share: float = 0.5, blocks: int = 0, log=print) -> dict[str, Tally]:
    tasks = []
    for kind in kinds:
        for k, start in enumerate(range(0, count, chunk)):
            tasks.append((kind, min(chunk, count - start), seed * 1000 + k))
    totals = {kind: Tally(kind) for kind in kinds}
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = {pool.submit(run_chunk, kind, n, s, timing, token_share, blocks): (kind, n) for kind, n, s in tasks}
        done = 0
        for fut in as_completed(futures):
            kind, n = futures[fut]
            t = fut.result()
            totals[kind].add(t)
            done += 1
            log(f"  [{done}/{len(tasks)}] {kind}: {n} injections in {t.seconds:.0f} s, "
                f"violations {t.violations}", file=sys.stderr)
    return totals


COLUMNS = (("kind", "kind"), ("inj", "injections"), ("reads ok/fail", None), ("tokens ok/fail", None),
           ("unknown (applied)", None), ("lost", "lost"), ("twice", "twice"), ("wrong value", "wrong_value"),
           ("wrong outcome", "wrong_outcome"), ("hangs", "hangs"), ("crashes", "crashes"),
           ("account check", "account"),
           ("BCC-blind value", "bcc_blind"), ("failed, entered", "failed_entered"), ("resync fail", "resync_failures"),
           ("rebuilds", "rebuilds"), ("max op s", None))


def table(totals: dict[str, Tally]) -> str:
    rows = []
    all_ = Tally("total")
    for t in totals.values():
        all_.add(t)
    for t in [*totals.values(), all_]:
        row = []
        for head, attr in COLUMNS:
            if attr:
                row.append(str(getattr(t, attr)))
            elif head.startswith("reads"):
                row.append(f"{t.reads_ok}/{t.reads_failed}")
            elif head.startswith("tokens"):
                row.append(f"{t.tokens_ok}/{t.tokens_failed}")
            elif head.startswith("unknown"):
                row.append(f"{t.unknown} ({t.unknown_applied})")
            else:
                row.append(f"{t.max_op_s:.1f}")
        rows.append(row)
    heads = [h for h, _ in COLUMNS]
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="injections per fault kind (default 1000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default=",".join(FAULT_KINDS), help="comma-separated (default: all)")
    ap.add_argument("--timing", choices=tuple(TIMINGS), default="scaled")
    ap.add_argument("--workers", type=int, default=6, help="worker processes, one line each (default 6)")
    ap.add_argument("--chunk", type=int, default=100, help="injections per task (default 100)")
    ap.add_argument("--token-share", type=float, default=0.5, help="share of token transfers (default 0.5)")
    ap.add_argument("--blocks", type=int, default=0, metavar="N",
                    help="the meter answers every read in partial blocks of N data characters (default 0: whole)")
    ap.add_argument("--json", metavar="FILE", help="write the tallies and examples as JSON")
    a = ap.parse_args(argv)
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        ap.error(f"unknown fault kind {bad[0]!r}: expected some of {', '.join(FAULT_KINDS)}")
    t0 = time.monotonic()
    totals = run_campaign(kinds, a.count, a.seed, timing=a.timing, workers=a.workers, chunk=a.chunk,
                          token_share=a.token_share, blocks=a.blocks)
    wall = time.monotonic() - t0
    print(f"fault campaign: {a.count} injections x {len(kinds)} kinds, timing {a.timing}, seed {a.seed}, "
          + (f"partial blocks of {a.blocks}, " if a.blocks else "") +
          f"{a.workers} workers: {wall:.0f} s")
    print(table(totals))
    worst = sum(t.violations for t in totals.values())
    for t in totals.values():
        for e in t.examples:
            print("  example:", json.dumps(e)[:600])
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "wall_s": wall,
                       "tallies": {k: asdict(t) for k, t in totals.items()}}, f, indent=1)
    print("violations:", worst)
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
