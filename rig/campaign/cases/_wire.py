"""Raw exchanges for cases that send what the Client would not (undefined commands, a lone NAK,
requests after a break) and watch what comes back; every one is a timed Exchange record."""
from __future__ import annotations

from rig.client import Client
from rig.exchange import Exchange
from rig.protocol import Data, Message, ProtocolError, message_from_frame

MS = 1_000_000


def raw(client: Client, msg: Message | bytes, name: str, *, wait_ns: int | None = None,
        at_ns: int | None = None) -> Exchange:
    """Send msg (a message, or 7-bit characters) and take the first frame that comes back within
    wait_ns (default: the command timeout), through Client.send. ex.message is None when nothing
    (good) came."""
    chars = bytes(msg) if isinstance(msg, (bytes, bytearray)) else msg.to_bytes()
    ex = Exchange(name)
    client.reader.discard()
    ex.request_start_ns, ex.request_end_ns, frame = client.send(chars, wait_ns=wait_ns, at_ns=at_ns)
    ex.request, ex.attempts = chars, 1
    client.exchanges.append(ex)
    if frame is None:
        ex.answer_kind = "none"
        return ex
    ex.answer, ex.answer_kind = frame.data, frame.kind
    ex.answer_first_ns, ex.answer_last_ns = frame.t_first_ns, frame.t_last_ns
    ex.max_ta_ns = frame.max_gap_ns
    ex.tr_ns = frame.t_first_ns - client.port.char_ns - ex.request_end_ns
    if not frame.ok:
        ex.errors.append("bad answer: " + "; ".join(frame.errors_list()))
        return ex
    try:
        ex.message = message_from_frame(frame, client.profile.limits)
    except ProtocolError as e:
        ex.errors.append(f"bad answer: {e}")
    return ex


def is_error_answer(msg) -> bool:
    return isinstance(msg, Data) and msg.error_text is not None and not (msg.datasets and msg.datasets[0].address)


ALLOWED_CONTROLS = {0x01, 0x02, 0x03, 0x04, 0x06, 0x15, 0x0A, 0x0D}


def non_646(wire: bytes) -> int:
    """Characters that are neither printable ISO/IEC 646 nor one of the protocol's controls."""
    return sum(1 for b in wire if not (0x20 <= (b & 0x7F) <= 0x7E or (b & 0x7F) in ALLOWED_CONTROLS))
