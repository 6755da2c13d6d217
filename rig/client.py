"""The HHU client: identify, read, write, transfer a token, sign off; every exchange timed.

The client drives a Port (any URL: hardware, or the virtual line) with the profile's timing:
an answer must start within tr (tr_min..tr_max; 20 ms minimum for a lower-case third
manufacturer letter) and its characters come less than ta apart; a bad answer gets NAK and a bad
request (NAK from the server) or a missing answer is repeated, up to the profile's repeat count.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rig import _clock
from rig._framing import Framer
from rig.errors import RigError
from rig.exchange import Exchange, FrameReader
from rig.link import Port
from rig.measurement import Measurement
from rig.profile import Profile, load_profile
from rig.protocol import (
    Ack, BreakCommand, Data, DataSet, IDRequest, IDResponse, Message, Nak, OptionSelect,
    PasswordCommand, ProtocolError, ReadCommand, WriteCommand, message_from_frame,
)

NOT_READY = 16


class ClientError(RigError):
    """An exchange that failed after every repeat; carries its record."""

    def __init__(self, message: str, exchange: Exchange | None = None):
        super().__init__(message)
        self.exchange = exchange


class TokenLockoutActive(ClientError):
    """The meter refuses tokens for now (tokenStatus: token lockout active)."""


@dataclass
class TokenResult:
    token: str
    status: int | None = None            # tokenStatus code
    status_name: str = ""
    results: dict[str, tuple[int, str]] = field(default_factory=dict)  # register -> (code, name)
    execution_ns: int | None = None      # write of TokenData to the first status other than Not ready
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.status == 1

    def as_dict(self) -> dict:
        return {"token": self.token, "status": self.status, "status_name": self.status_name,
                "accepted": self.accepted,
                "results": {k: {"code": c, "name": n} for k, (c, n) in self.results.items()},
                "execution_ms": None if self.execution_ns is None else self.execution_ns / 1e6,
                "exchanges": [e.as_dict() for e in self.exchanges]}


class Client:
    """An HHU talking to one meter on one port. `with Client(url) as hhu: hhu.identify() ...`"""

    def __init__(self, port: Port | str, profile: Profile | None = None, *, address: str | None = None,
                 baud: int | None = None):
        self.profile = profile or load_profile()
        if isinstance(port, str):
            port = Port(port, baud=self.profile.character.initial_baud, fmt=self.profile.character.format)
        self.port = port
        self.address = self.profile.identification.device_address if address is None else address
        self.want_baud = baud or self.profile.character.max_baud
        self.reader = FrameReader(port, Framer.from_profile(self.profile, parity="even"
                                                            if self.profile.character.format == "7E1" else "none"),
                                  self.profile.timing.ta_ns)
        self.identity: IDResponse | None = None
        self.exchanges: list[Exchange] = []
        self._last_end_ns = 0

    # -- the exchanges -----------------------------------------------------------------------------
    def identify(self, mode: str = "1") -> Exchange:
        """IDRequest, IDResponse, option select (mode 1: programming), speed switch; the server's
        P0 answer at the new speed completes it."""
        p = self.profile
        self.port.set_baud(p.character.initial_baud)
        ex = self._exchange("identify", IDRequest(self.address), expect=IDResponse)
        ident = ex.message
        self.identity = ident
        try:
            server_baud = p.baud_from_char(ident.baud_char)
        except ValueError:
            server_baud = p.character.initial_baud
        baud = min(server_baud, self.want_baud, p.character.max_baud)
        select = OptionSelect("0", p.baud_char(baud, "C"), mode)
        sel = Exchange("option select")
        self._send(select, sel)
        self.exchanges.append(sel)
        self.port.set_baud(baud, at_ns=self._last_end_ns + p.timing.speed_switch_guard_ns)
        if mode == "1":
            self._receive("option select", select, PasswordCommand, sel)
        return ex

    def read(self, register: str) -> tuple[str, Exchange]:
        """The value of a register (by name or registerID) and the exchange."""
        reg = self._register(register)
        ex = self._exchange(f"read {reg.name}", ReadCommand.of(reg.register_id), expect=Data)
        msg = ex.message
        if msg.error_text is not None and not msg.datasets[0].address:
            ex.errors.append(f"error answer: {msg.error_text}")
            raise ClientError(f"read {reg.name} ({reg.register_id}): the meter answered error "
                              f"{msg.error_text!r}", ex)
        ds = msg.datasets
        if not ds:
            raise ClientError(f"read {reg.name}: empty answer {msg.data!r}", ex)
        return ds[0].value, ex

    def write(self, register: str, value: str) -> Exchange:
        """Write a register; the meter's ACK completes it, an error answer raises ClientError."""
        reg = self._register(register)
        ex = self._exchange(f"write {reg.name}", WriteCommand.of(DataSet(reg.register_id, value)),
                            expect=(Ack, Data))
        if isinstance(ex.message, Data):
            ex.errors.append(f"error answer: {ex.message.error_text or ex.message.data}")
            raise ClientError(f"write {reg.name} ({reg.register_id}): the meter answered error "
                              f"{ex.message.error_text or ex.message.data!r}", ex)
        return ex

    def transfer_token(self, token: str) -> TokenResult:
        """Write TokenData, poll tokenStatus until it is no longer Not ready (within the profile's
        execution limit), then read the TCDU results."""
        p = self.profile
        result = TokenResult(token)
        ex = self.write("TokenData", token)
        result.exchanges.append(ex)
        t_written = ex.answer_first_ns
        limit = ex.request_end_ns + p.timing.execution_limit_ns
        codes = p.codes["tokenStatus"]
        while True:
            value, rex = self.read("tokenStatus")
            result.exchanges.append(rex)
            status = int(value)
            if status != NOT_READY:
                break
            if _clock.now_ns() + p.timing.not_ready_poll_ns > limit:
                raise ClientError(f"token {token}: still not ready after the execution limit "
                                  f"{p.timing.execution_limit_ns / 1e9:g} s", rex)
            _clock.sleep_until(_clock.now_ns() + p.timing.not_ready_poll_ns)
        result.execution_ns = rex.answer_first_ns - t_written
        result.status, result.status_name = status, codes.get(status, f"code {status}")
        for name in ("AuthenticationResult", "ValidationResult", "TokenResult"):
            value, rex = self.read(name)
            result.exchanges.append(rex)
            code = int(value)
            result.results[name] = (code, p.codes[name].get(code, f"code {code}"))
        if status == 15:
            raise TokenLockoutActive(f"token {token}: the meter's token lockout is active", rex)
        return result

    def sign_off(self) -> Exchange:
        """BreakCommand; the server answers nothing and returns to its start state."""
        ex = Exchange("sign off")
        self._send(BreakCommand(), ex)
        self.exchanges.append(ex)
        self.port.set_baud(self.profile.character.initial_baud)
        return ex

    # -- mechanics ---------------------------------------------------------------------------------
    def _register(self, register: str):
        p = self.profile
        reg = p.registers.get(register) or p.register_by_id(register)
        if reg is None:
            raise ClientError(f"register {register!r}: not in the profile's register table "
                              f"({', '.join(p.registers)})")
        return reg

    def _send(self, msg: Message, ex: Exchange) -> None:
        # the client leaves tr_min after the last answer before it speaks (assumed, as HHUs do)
        at = max(_clock.now_ns(), self._last_end_ns + self.profile.timing.tr_min_fast_ns)
        chars = msg.to_bytes()
        times = self.port.write(chars, at_ns=at)
        ex.request = chars
        ex.request_start_ns = int(times[0])
        ex.request_end_ns = int(times[-1]) + self.port.char_ns
        ex.attempts += 1
        self._last_end_ns = ex.request_end_ns
        self.reader.expect_echo(chars, ex.request_end_ns + 2 * self.port.char_ns)

    def _exchange(self, name: str, msg: Message, expect) -> Exchange:
        ex = Exchange(name)
        self.reader.discard()
        self._send(msg, ex)
        self.exchanges.append(ex)
        return self._receive(name, msg, expect, ex)

    def _receive(self, name: str, ex_from: Message, expect, ex: Exchange) -> Exchange:
        p = self.profile
        repeats = p.protocol.nak_repeats
        said_end = ex.request_end_ns  # end of what we said last: the request, or our NAK
        while True:
            # the answer must start within the command timeout; its first character arrives
            # one character time later, plus the latency of the OS (assumed 20 ms at most)
            deadline = said_end + p.timing.command_timeout_ns + self.port.char_ns + 20_000_000
            frame = self.reader.next_frame(deadline)
            while frame is not None and (frame.kind == "garbage" or self._stale(frame, said_end)):
                if frame.kind == "garbage":
                    ex.errors.append(f"garbage before the answer: {len(frame.data)} byte(s)")
                else:
                    ex.errors.append(f"ignored a {frame.kind} frame that began before our request "
                                     "ended: an answer to an earlier attempt")
                frame = self.reader.next_frame(deadline)
            if frame is None:
                problem = f"no answer within {p.timing.command_timeout_ns / 1e6:g} ms"
            elif not frame.ok:
                problem = "bad answer: " + "; ".join(frame.errors_list())
            else:
                problem = None
                try:
                    msg = message_from_frame(frame)
                except ProtocolError as e:
                    msg, problem = None, f"bad answer: {e}"
            if problem is None and isinstance(msg, Nak):
                ex.naks_received += 1
                problem = "NAK from the meter"
            if problem is None and not isinstance(msg, expect):
                problem = f"unexpected answer {msg}"
            if problem is None:
                break
            if ex.attempts + ex.naks_sent > repeats:
                ex.errors.append(problem)
                raise ClientError(f"{name}: {problem} (after {ex.attempts} request(s) and "
                                  f"{ex.naks_sent} NAK(s))", ex)
            ex.errors.append(problem)
            if frame is not None and not frame.ok:
                ex.naks_sent += 1  # ask for the answer again
                self._last_end_ns = frame.t_last_ns
                said_end = self._send_nak()
            else:
                self.reader.discard()
                self._send(ex_from, ex)  # no answer, a NAK or a wrong answer: repeat the request
                said_end = ex.request_end_ns
        # it came through, perhaps after repeats: the problems met on the way were recovered
        ex.recovered, ex.errors = ex.errors, []
        ex.message = msg
        ex.answer = frame.data
        ex.answer_kind = frame.kind
        ex.answer_first_ns, ex.answer_last_ns = frame.t_first_ns, frame.t_last_ns
        ex.max_ta_ns = frame.max_gap_ns
        ex.tr_ns = frame.t_first_ns - self.port.char_ns - ex.request_end_ns
        self._last_end_ns = frame.t_last_ns
        self._measure(ex)
        return ex

    def _send_nak(self) -> int:
        """NAK the answer; returns when the NAK is off the line."""
        at = max(_clock.now_ns(), self._last_end_ns + self.profile.timing.tr_min_fast_ns)
        chars = Nak().to_bytes()
        times = self.port.write(chars, at_ns=at)
        end = int(times[-1]) + self.port.char_ns
        self.reader.expect_echo(chars, end + self.port.char_ns)
        self._last_end_ns = end
        return end

    def _stale(self, frame, said_end: int) -> bool:
        """A frame that began on the line before we finished speaking cannot answer what we said
        (half duplex): it answers an earlier attempt. Only where the port has line timing."""
        if not self.port.line_timed or frame.t_first_ns < 0:
            return False
        return frame.t_first_ns - self.port.char_ns < said_end - self.port.char_ns // 2

    def _measure(self, ex: Exchange) -> None:
        t = self.profile.timing
        ident = ex.message if isinstance(ex.message, IDResponse) else self.identity
        fast = ident is not None and ident.fast_reaction
        tr_min = t.tr_min_fast_ns if fast else t.tr_min_ns
        ex.measurements.append(Measurement("tr", ex.tr_ns / 1e6, "ms", tr_min / 1e6, t.tr_max_ns / 1e6,
                                           basis="IEC 62056-21 §5 (profile)"))
        ex.measurements.append(Measurement("ta max", ex.max_ta_ns / 1e6, "ms", None, t.ta_ns / 1e6,
                                           basis="IEC 62056-21 §5 (profile)"))

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
