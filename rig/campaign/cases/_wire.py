"""Raw exchanges for cases that send what the Client would not (undefined commands, a lone NAK,
requests after a break) and watch what comes back; every one is a timed Exchange record."""
from __future__ import annotations

from rig import _clock
from rig.client import Client
from rig.exchange import Exchange
from rig.link import OS_LATENCY_NS
from rig.protocol import Data, Message, ProtocolError, message_from_frame

MS = 1_000_000



def raw(client: Client, msg: Message | bytes, name: str, *, wait_ns: int | None = None,
        at_ns: int | None = None) -> Exchange:
    """Send msg (a message, or 7-bit characters) and take the first frame that comes back within
    wait_ns (default: the command timeout). ex.message is None when nothing (good) came."""
    p = client.profile
    chars = msg if isinstance(msg, (bytes, bytearray)) else msg.to_bytes()
    ex = Exchange(name)
    client.reader.discard()
    at = max(_clock.now_ns(), client._last_end_ns + p.timing.tr_min_fast_ns) if at_ns is None else at_ns
    times = client.port.write(bytes(chars), at_ns=at)
    ex.request = bytes(chars)
    ex.request_start_ns = int(times[0])
    ex.request_end_ns = int(times[-1]) + client.port.char_ns
    ex.attempts = 1
    client._last_end_ns = ex.request_end_ns
    client.reader.expect_echo(bytes(chars), ex.request_end_ns + 2 * client.port.char_ns)
    client.exchanges.append(ex)
    wait = p.timing.command_timeout_ns if wait_ns is None else wait_ns
    frame = client.reader.next_frame(ex.request_end_ns + wait + client.port.char_ns + OS_LATENCY_NS)
    while frame is not None and frame.kind == "garbage":
        frame = client.reader.next_frame(ex.request_end_ns + wait + client.port.char_ns + OS_LATENCY_NS)
    if frame is None:
        ex.answer_kind = "none"
        return ex
    ex.answer, ex.answer_kind = frame.data, frame.kind
    ex.answer_first_ns, ex.answer_last_ns = frame.t_first_ns, frame.t_last_ns
    ex.max_ta_ns = frame.max_gap_ns
    ex.tr_ns = frame.t_first_ns - client.port.char_ns - ex.request_end_ns
    client._last_end_ns = frame.t_last_ns
    if not frame.ok:
        ex.errors.append("bad answer: " + "; ".join(frame.errors_list()))
        return ex
    try:
        ex.message = message_from_frame(frame)
    except ProtocolError as e:
        ex.errors.append(f"bad answer: {e}")
    return ex


def is_error_answer(msg) -> bool:
    return isinstance(msg, Data) and msg.error_text is not None and not (msg.datasets and msg.datasets[0].address)


ALLOWED_CONTROLS = {0x01, 0x02, 0x03, 0x04, 0x06, 0x15, 0x0A, 0x0D}


def non_646(wire: bytes) -> int:
    """Characters that are neither printable ISO/IEC 646 nor one of the protocol's controls."""
    return sum(1 for b in wire if not (0x20 <= (b & 0x7F) <= 0x7E or (b & 0x7F) in ALLOWED_CONTROLS))
