"""The STS token model of the meter emulator (FACTS.md §7): what a meter decides for a token.

IEC 62055-41 (the STS token layer) is not public to us; what this module assumes is marked
"assumed" here and in the table file. It decides, never computes STS crypto: the result of a token
comes from a *test-token table* (rig/profiles/test-tokens.toml by default), or a default result for
a well-formed token that is not listed. On top of the table it keeps what a meter keeps:

- format checks (20 decimal digits, value below 2**66);
- used tokens: an accepted token entered again is "Used" (kept for the model's lifetime, across
  power cycles: assumed non-volatile);
- old tokens: a table entry with status "Old"; and, assumed, for entries that give a `tid`: a TID
  below the oldest of the remembered accepted TIDs once that memory (`tid_memory`) is full is "Old",
  a TID already remembered is "Used";
- TokenLockout (profile.token_lockout; one vendor's scheme, assumed): after `threshold` rejected
  tokens in a row entry is locked for `initial_period`, times `factor` per further reject up to
  `max_period`; an accepted token and a power cycle clear it. While locked a token is answered
  "Token lockout active" without being evaluated, and does not count as a reject (assumed). Every
  evaluated token that is not accepted counts as a reject, "Used" and "Format error" included
  (assumed). Time is always passed in (`now_ns`); the model never reads a clock.
- an account: every token entered, when, its outcome, and the credit applied, so a campaign can
  prove that no token was lost or applied twice (`history`, `applied`, `account()`).

    model = TokenModel.default(profile)
    entry = model.enter("56746304125830196637", now_ns)
    entry.outcome.token_status, entry.outcome.accepted     # 1, True
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Mapping

from rig.config_check import Checker, FileError, Int, Num, Text, read_toml
from rig.errors import RigError
from rig.profile import Profile

__all__ = ["DEFAULT_STATUS", "DEFAULT_TABLE_PATH", "REPORTED_OUTCOMES", "Reported", "Token", "TokenEntry",
           "TokenError", "TokenLockout", "TokenModel", "TokenOutcome", "TokenSpec", "TokenStatus",
           "TokenTableError", "TransferAccount", "code_of"]

DEFAULT_TABLE_PATH = Path(__file__).with_name("profiles") / "test-tokens.toml"
TOKEN_DIGITS = 20
TOKEN_BITS = 66
# A well-formed token that is not in the table (assumed). An STS meter cannot tell a token made
# for another meter (or with another key) from a corrupted one: decrypting it with its own key
# gives a block whose CRC does not match. So the safe default is a reject, "CRC error".
DEFAULT_STATUS = "CRC error"
TID_MEMORY = 50  # accepted TIDs a meter remembers (assumed; real meters keep a few dozen)



class TokenStatus(StrEnum):
    """The tokenStatus names the rig acts on (FACTS.md §7). Their numbers are the profile's
    (codes.tokenStatus, names matched without case): look them up with code_of(), never write them."""
    ACCEPT = "Accept"
    FIRST_KEY_CHANGE_ACCEPTED = "First key-change token accepted"
    SECOND_KEY_CHANGE_ACCEPTED = "Second key-change token accepted"
    FORMAT_ERROR = "Format error"
    OLD = "Old"
    USED = "Used"
    TOKEN_LOCKOUT_ACTIVE = "Token lockout active"
    NOT_READY = "Not ready"


# tokenStatus name -> (AuthenticationResult, ValidationResult, TokenResult) names (assumed: the
# three TCDU code tables are our guesses, see the profile). Names are matched without case.
TCDU_RESULTS: dict[str, tuple[str, str, str]] = {
    "accept": ("Authentic", "Valid", "Accepted"),
    "first key-change token accepted": ("Authentic", "Valid", "First key-change token accepted"),
    "second key-change token accepted": ("Authentic", "Valid", "Second key-change token accepted"),
    "overflow": ("Authentic", "Valid", "Overflow"),
    "key type error": ("Key error", "No token", "Rejected"),
    "format error": ("Format error", "No token", "Rejected"),
    "range error": ("Authentic", "Range error", "Rejected"),
    "function not supported": ("Authentic", "Function not supported", "Rejected"),
    "old": ("Authentic", "Old", "Rejected"),
    "used": ("Authentic", "Used", "Rejected"),
    "key expired": ("Authentic", "Key expired", "Rejected"),
    "credit with default key": ("Key error", "No token", "Rejected"),
    "crc error": ("CRC error", "No token", "Rejected"),
    "manufacturer code mismatch": ("Authentic", "Manufacturer code mismatch", "Rejected"),
    "token lockout active": ("No token", "No token", "Token lockout active"),
    "not ready": ("Not ready", "Not ready", "Not ready"),
}
ACCEPTING = frozenset(n.lower() for n in (TokenStatus.ACCEPT, TokenStatus.FIRST_KEY_CHANGE_ACCEPTED,
                                           TokenStatus.SECOND_KEY_CHANGE_ACCEPTED))
TCDU_TABLES = ("tokenStatus", "AuthenticationResult", "ValidationResult", "TokenResult")


class TokenError(RigError, ValueError):
    """A token text that is not a well-formed STS token (the meter's "Format error")."""

    def __init__(self, token: str, reason: str):
        self.token, self.reason = token, reason
        super().__init__(f"token {token!r}: {reason}")


class TokenTableError(FileError):
    """A test-token table that cannot be used, in the one format of rig.config_check:
    `file:line: key: what is wrong (expected ...)`; a table given in code names its `source`."""


# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Token:
    """A well-formed STS token: 20 decimal digits holding a 66-bit number.

    Bit placement (assumed, IEC 62055-41 is not public to us): the token class is the top 2 bits
    of the 66, the subclass the next 4. The real carrier may move the class bits elsewhere after
    encryption; nothing here depends on it beyond the `token_class` property."""
    text: str
    number: int

    @classmethod
    def parse(cls, text: str) -> "Token":
        """The token of a 20-digit string, or TokenError saying what is wrong with it."""
        if not isinstance(text, str):
            raise TokenError(repr(text), f"expected a string of {TOKEN_DIGITS} digits, got {type(text).__name__}")
        for i, ch in enumerate(text):
            if not ("0" <= ch <= "9"):
                raise TokenError(text, f"non-digit {ch!r} at position {i + 1}")
        if len(text) != TOKEN_DIGITS:
            raise TokenError(text, f"expected {TOKEN_DIGITS} digits, got {len(text)}")
        n = int(text)
        if n >= 1 << TOKEN_BITS:
            raise TokenError(text, f"value {n} is not below 2**{TOKEN_BITS} = {1 << TOKEN_BITS}")
        return cls(text, n)

    @property
    def token_class(self) -> int:
        """0 credit, 1 non-meter-specific, 2 meter-specific management, 3 reserved (FACTS.md §7)."""
        return self.number >> 64

    @property
    def subclass(self) -> int:
        """The 4 bits after the class bits (their placement assumed, as above)."""
        return (self.number >> 60) & 0xF

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class TokenOutcome:
    """The four TCDU results of one token, as code numbers of the profile's code tables."""
    token_status: int
    authentication: int
    validation: int
    token_result: int
    status_name: str
    accepted: bool

    def __str__(self) -> str:
        return (f"{self.status_name} (tokenStatus {self.token_status}, authentication "
                f"{self.authentication}, validation {self.validation}, result {self.token_result})")


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """One test-token table entry."""
    text: str
    outcome: TokenOutcome
    credit: float = 0  # applied when accepted (units of the test; assumed)
    tid: int | None = None  # token identifier, minutes since the base date (assumed 24 bits)
    description: str = ""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One token entered, in the account."""
    seq: int  # 0, 1, 2 ... in entry order
    at_ns: int  # when it was entered (the time passed in)
    text: str  # as entered, well-formed or not
    outcome: TokenOutcome
    reason: str  # why: "table", "default", "used", "old (tid ...)", "lockout ...", "format: ..."
    credit: float  # credit applied by this entry (0 unless accepted)

    def __str__(self) -> str:
        return f"#{self.seq} {self.text} at {self.at_ns} ns: {self.outcome.status_name} ({self.reason})"


class TokenLockout:
    """Lockout of token entry after repeated rejects; parameters from profile.token_lockout.

    Consecutive rejects are counted until cleared (an accept or a power cycle, as the profile
    says); each reject at or above the threshold locks entry for profile.token_lockout.period_ns()."""

    def __init__(self, params):
        self.params = params
        self.rejects = 0
        self.until_ns: int | None = None

    def locked(self, now_ns: int) -> bool:
        """True while token entry is locked at now_ns."""
        return self.until_ns is not None and now_ns < self.until_ns

    def remaining_ns(self, now_ns: int) -> int:
        """Time left of the lockout at now_ns (0: not locked)."""
        return max(0, self.until_ns - now_ns) if self.until_ns is not None else 0

    def reject(self, now_ns: int) -> int:
        """Count a rejected token; returns the lockout period it starts (0: none)."""
        self.rejects += 1
        period = self.params.period_ns(self.rejects)
        if period:
            self.until_ns = now_ns + period
        return period

    def accept(self) -> None:
        """An accepted token: the reject count clears if the profile says so."""
        if self.params.cleared_by_accept:
            self.clear()

    def power_cycle(self) -> None:
        """The meter restarts: the lockout clears if the profile says so."""
        if self.params.cleared_by_power_cycle:
            self.clear()

    def clear(self) -> None:
        """No rejects counted, no lockout."""
        self.rejects, self.until_ns = 0, None

    def __repr__(self) -> str:
        return f"<TokenLockout rejects={self.rejects} until_ns={self.until_ns}>"


# ---------------------------------------------------------------------------------------------

def _names(profile: Profile, table: str) -> dict[str, int]:
    return {name.lower(): code for code, name in profile.codes.get(table, {}).items()}


def code_of(profile: Profile, table: str, name: str) -> int | None:
    """The code of `name` (any case) in the profile's code table `table` ("tokenStatus",
    "TokenResult", ...); None when the profile has no such code."""
    return _names(profile, table).get(name.lower())


def _code(profile: Profile, table: str, value: Any, c: Checker, path: tuple) -> int:
    """A code of `table` given by name (any case) or number; TokenTableError at `path` otherwise."""
    codes = profile.codes.get(table)
    if codes is None:
        raise c.refuse(path, f"the profile has no code table {table!r}")
    if type(value) is int:
        if value in codes:
            return value
    elif isinstance(value, str):
        found = _names(profile, table).get(value.lower())
        if found is not None:
            return found
    else:
        raise c.fail(path, f"a {table} code name or number", value)
    listed = ", ".join(f"{code} {name!r}" for code, name in codes.items())
    raise c.refuse(path, f"{value!r} is not in the profile's {table} codes", f"one of: {listed}")


_OUTCOME_KEYS = ("status", "authentication", "validation", "result")


def make_outcome(profile: Profile, status: Any, where: str = "token outcome", *,
                 authentication: Any = None, validation: Any = None, result: Any = None) -> TokenOutcome:
    """The TCDU outcome of a tokenStatus (name or code); the other three default from TCDU_RESULTS.
    A value the profile does not know raises TokenTableError naming `where` and the key."""
    return _outcome(profile, Checker(where, error=TokenTableError), tuple((k,) for k in _OUTCOME_KEYS),
                    status, (authentication, validation, result))


def _outcome(profile: Profile, c: Checker, paths: tuple, status: Any, given: tuple) -> TokenOutcome:
    """make_outcome with its errors at `paths` of `c`'s file (status, authentication, validation, result)."""
    code = _code(profile, "tokenStatus", status, c, paths[0])
    name = profile.codes["tokenStatus"][code]
    defaults = TCDU_RESULTS.get(name.lower())
    if defaults is None and None in given:
        raise c.refuse(paths[0], f"tokenStatus {name!r} has no default TCDU results",
                       "authentication, validation and result given with it")
    auth, valid, res = [_code(profile, t, g if g is not None else d, c, at)
                        for t, g, d, at in zip(TCDU_TABLES[1:], given, defaults or (None,) * 3, paths[1:])]
    return TokenOutcome(code, auth, valid, res, status_name=name, accepted=name.lower() in ACCEPTING)


_ENTRY_KEYS = ("status", "authentication", "validation", "result", "credit", "tid", "description")
_TID = Int(0, (1 << 24) - 1)


def _spec(profile: Profile, text: Any, raw: Any, c: Checker) -> TokenSpec:
    """The entry `raw` of token `text` in the table checked by `c` (its key: tokens.<text>)."""
    if not isinstance(text, str):
        raise c.fail(("tokens", str(text)), f"a token as a string of {TOKEN_DIGITS} digits", text)
    p = ("tokens", text)
    try:
        Token.parse(text)
    except TokenError as e:
        raise c.refuse(p, f"{e}; a malformed token needs no entry (it is a Format error)") from None
    if isinstance(raw, TokenSpec):
        return raw
    if isinstance(raw, str):
        raw = {"status": raw}
    if not isinstance(raw, Mapping):
        raise c.fail(p, f"a status, or a table with keys {', '.join(_ENTRY_KEYS)}", raw)
    c.keys(dict(raw), p, _ENTRY_KEYS)
    if "status" not in raw:
        raise c.refuse(p + ("status",), "missing", 'a tokenStatus name or code, e.g. "Accept"')
    outcome = _outcome(profile, c, tuple(p + (k,) for k in _OUTCOME_KEYS), raw["status"],
                       (raw.get("authentication"), raw.get("validation"), raw.get("result")))
    credit = raw.get("credit", 0)
    if not (Num().ok(credit) and credit >= 0):
        raise c.fail(p + ("credit",), "a number >= 0", credit)
    tid = raw.get("tid")
    if tid is not None:
        c.check(tid, p + ("tid",), _TID)
    desc = c.check(raw.get("description", ""), p + ("description",), Text())
    return TokenSpec(text, outcome, credit, tid, desc)


class TokenModel:
    """Decides the outcome of each token entered; keeps used tokens, TIDs, lockout and the account.

    table: token text -> TokenSpec, or a dict as in the TOML file ({status, authentication,
    validation, result, credit, tid, description}), or just a status name.
    default_status: outcome of a well-formed token not in the table (DEFAULT_STATUS, assumed)."""

    def __init__(self, profile: Profile, table: Mapping[str, Any] | None = None, *,
                 default_status: Any = DEFAULT_STATUS, tid_memory: int = TID_MEMORY,
                 source: str = "token table", origin: Checker | None = None):
        self.profile = profile
        self.source = source
        # errors name `source` and the key; `origin` (from_file's checker) adds the file's lines
        c = origin or Checker(source, error=TokenTableError)
        c.check(tid_memory, ("tid_memory",), Int(1))
        self.table: dict[str, TokenSpec] = {
            text: _spec(profile, text, raw, c) for text, raw in (table or {}).items()}
        # the outcome of a token not in the table (not `default`: that is the classmethod below)
        self.default_outcome = _outcome(profile, c, (("default_status",),) * 4, default_status, (None,) * 3)
        self.tid_memory = tid_memory
        codes = Checker(profile.path, error=TokenTableError)
        std = {k: _outcome(profile, codes, tuple(("codes", t) for t in TCDU_TABLES), k, (None,) * 3)
               for k in (TokenStatus.USED, TokenStatus.OLD, TokenStatus.FORMAT_ERROR,
                         TokenStatus.TOKEN_LOCKOUT_ACTIVE, TokenStatus.NOT_READY)}
        self.used_outcome, self.old_outcome = std[TokenStatus.USED], std[TokenStatus.OLD]
        self.format_outcome = std[TokenStatus.FORMAT_ERROR]
        self.lockout_outcome, self.not_ready = std[TokenStatus.TOKEN_LOCKOUT_ACTIVE], std[TokenStatus.NOT_READY]
        self.lockout = TokenLockout(profile.token_lockout)
        self.used: set[int] = set()  # numbers of accepted tokens
        self.tids: list[int] = []  # remembered accepted TIDs, oldest first when full
        self.history: list[TokenEntry] = []
        self.applied: list[TokenEntry] = []  # the accepted entries, each applied once

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], profile: Profile) -> "TokenModel":
        """A model with the table of a TOML file (format: rig/profiles/test-tokens.toml)."""
        file = str(path)
        data, text = read_toml(file, TokenTableError)
        c = Checker(file, text, error=TokenTableError)
        c.keys(data, (), ("default_status", "tid_memory", "tokens"))
        tokens = data.get("tokens", {})
        if not isinstance(tokens, dict):
            raise c.fail(("tokens",), "a table of token -> entry", tokens)
        return cls(profile, tokens, default_status=data.get("default_status", DEFAULT_STATUS),
                   tid_memory=data.get("tid_memory", TID_MEMORY), source=file, origin=c)

    @classmethod
    def default(cls, profile: Profile) -> "TokenModel":
        """The model with the shipped test-token table."""
        return cls.from_file(DEFAULT_TABLE_PATH, profile)

    # -- deciding ------------------------------------------------------------------------------

    def locked(self, now_ns: int) -> bool:
        """True while token entry is locked out at now_ns."""
        return self.lockout.locked(now_ns)

    def evaluate(self, text: str, now_ns: int) -> tuple[TokenOutcome, str, TokenSpec | None]:
        """What entering `text` at `now_ns` would give, and why; changes nothing."""
        if self.lockout.locked(now_ns):
            return self.lockout_outcome, f"lockout: {self.lockout.remaining_ns(now_ns)} ns left", None
        try:
            token = Token.parse(text)
        except TokenError as e:
            return self.format_outcome, f"format: {e.reason}", None
        if token.number in self.used:
            return self.used_outcome, "used: accepted before", None
        spec = self.table.get(token.text)
        if spec is None:
            return self.default_outcome, "default", None
        if spec.outcome.accepted and spec.tid is not None:
            if spec.tid in self.tids:
                return self.used_outcome, f"used: tid {spec.tid} accepted before", spec
            if len(self.tids) >= self.tid_memory and spec.tid < self.tids[0]:
                return self.old_outcome, f"old: tid {spec.tid} below the oldest remembered {self.tids[0]}", spec
        return spec.outcome, "table", spec

    def enter(self, text: str, now_ns: int) -> TokenEntry:
        """Enter a token at `now_ns`: decide, record it in the account, apply it if accepted."""
        locked = self.lockout.locked(now_ns)
        outcome, reason, spec = self.evaluate(text, now_ns)
        credit: float = 0
        if locked:
            pass  # not evaluated: neither a reject nor an accept
        elif outcome.accepted:
            self.used.add(int(text))
            if spec is not None:
                credit = spec.credit
                if spec.tid is not None:
                    self.tids.append(spec.tid)
                    self.tids.sort()
                    del self.tids[:-self.tid_memory]
            self.lockout.accept()
        else:
            period = self.lockout.reject(now_ns)
            if period:
                reason += f"; lockout {period} ns"
        entry = TokenEntry(len(self.history), now_ns, text, outcome, reason, credit)
        self.history.append(entry)
        if outcome.accepted:
            self.applied.append(entry)
        return entry

    def power_cycle(self) -> None:
        """The meter restarts: the lockout clears (if the profile says so); used tokens stay."""
        self.lockout.power_cycle()

    # -- the account ---------------------------------------------------------------------------

    def account(self) -> dict[str, dict[str, float]]:
        """token text -> {entered, applied, credit}: how often each was entered and applied."""
        out: dict[str, dict[str, float]] = {}
        for e in self.history:
            row = out.setdefault(e.text, {"entered": 0, "applied": 0, "credit": 0})
            row["entered"] += 1
            if e.outcome.accepted:
                row["applied"] += 1
                row["credit"] += e.credit
        return out

    def applied_twice(self) -> list[str]:
        """Tokens applied more than once (the model guarantees none; a campaign checks it)."""
        return [t for t, n in Counter(e.text for e in self.applied).items() if n > 1]

    @property
    def total_credit(self) -> float:
        """The credit of every accepted token, summed."""
        return sum(e.credit for e in self.applied)


# ---------------------------------------------------------------------------------------------
# The HHU's side of the account: what the rig reported for each transfer, against the meter's.

REPORTED_OUTCOMES = ("accepted", "rejected", "unknown", "failed")


@dataclass(frozen=True, slots=True)
class Reported:
    """One transfer as the HHU reported it."""
    seq: int
    text: str
    outcome: str       # one of REPORTED_OUTCOMES ("failed": the session failed, nothing taken as far as known)
    status: int | None  # the tokenStatus reported (None when unknown or failed)
    reason: str = ""   # why unknown or failed, e.g. "acknowledgement lost"


class TransferAccount:
    """What the rig told its user about each token transfer, kept beside the meter's own account
    (TokenModel) so a campaign can prove the reports true. Unknown outcomes ("outcome unknown:
    acknowledgement lost") are counted apart: never a wrong verdict, never a success.

        acct = TransferAccount()
        acct.record(result.token, result.outcome, result.status, result.unknown_reason)
        acct.check(meter.tokens)   # {"wrong": [...], "applied_twice": [...], "lost": [...], ...}"""

    def __init__(self):
        self.reports: list[Reported] = []

    def record(self, text: str, outcome: str, status: int | None = None, reason: str = "") -> Reported:
        """Note what the rig reported for one transfer (outcome: one of REPORTED_OUTCOMES)."""
        if outcome not in REPORTED_OUTCOMES:
            raise ValueError(f"outcome {outcome!r}: expected one of {', '.join(REPORTED_OUTCOMES)}")
        r = Reported(len(self.reports), text, outcome, status if outcome in ("accepted", "rejected") else None, reason)
        self.reports.append(r)
        return r

    def counts(self) -> dict[str, int]:
        """Transfers per reported outcome; "unknown" apart from the verdicts."""
        c = Counter(r.outcome for r in self.reports)
        return {k: c.get(k, 0) for k in REPORTED_OUTCOMES}

    def check(self, model: "TokenModel") -> dict[str, list]:
        """The reports against the meter's account; every list but "unknown" must be empty for a
        true rig. Per token: wrong: more transfers reported accepted than the meter applied, or a
        reported tokenStatus the meter never gave that token; applied_unreported: applied more often
        than reported accepted or unknown (a verdict "rejected" for a token the meter took: wrong,
        "failed": lost to the user); applied_twice: the meter's own. unknown: the unknown reports."""
        applied = Counter(e.text for e in model.applied)
        given: dict[str, set[int]] = {}
        for e in model.history:
            given.setdefault(e.text, set()).add(e.outcome.token_status)
        wrong, unreported = [], []
        for text in dict.fromkeys(r.text for r in self.reports):
            mine = [r for r in self.reports if r.text == text]
            n_acc = sum(r.outcome == "accepted" for r in mine)
            n_unk = sum(r.outcome == "unknown" for r in mine)
            if n_acc > applied.get(text, 0):
                wrong.append((text, f"reported accepted {n_acc} time(s), applied {applied.get(text, 0)}"))
            if applied.get(text, 0) > n_acc + n_unk:
                unreported.append((text, f"applied {applied[text]} time(s), reported accepted {n_acc}, "
                                         f"unknown {n_unk}: {[r.outcome for r in mine]}"))
            for r in mine:
                if r.status is not None and r.status not in given.get(text, set()):
                    wrong.append((text, f"reported tokenStatus {r.status}, the meter gave {sorted(given.get(text, ()))}"))
        return {"wrong": wrong, "applied_unreported": unreported, "applied_twice": model.applied_twice(),
                "unknown": [r for r in self.reports if r.outcome == "unknown"]}
