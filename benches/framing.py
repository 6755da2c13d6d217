"""Framing bench: 7E1 wire bytes of data messages -> message objects.

Columns, side by side in one run on the same bytes:
  rig          Framer(parity="even").feed() + message_from_frame(): parity, split, BCC, syntax, Data objects
  rig+sets     the same, then every message's data sets parsed (DataSet objects)
  framer       rig Framer alone (Frame objects, parity/BCC/syntax checked)
  records      rig Framer alone, Framer.feed_records(): the same frames as one numpy array
  model        the plain-Python model of the same framer (rig._framing_model) + the same messages
  iec62056-21  the PyPI library `iec62056-21` (a test dependency of the rig, or
               `pip install iec62056-21`), given its best case: parity stripped with
               bytes.translate (it has no parity handling), frames split at ETX with bytes.index
               (its framing is in its transport), then AnswerDataMessage.from_bytes() (BCC check
               and data-set parsing).
  lib reader   the library's own framing path: its transport's read() (one recv(1) per
               character) over an in-memory transport, then AnswerDataMessage.from_bytes().
Run: python benches/framing.py [--messages 10000] [--repeat 5]

Digest (``--digest``): sha256 over every output of the framer (each frame's kind, bytes, times, errors,
BCCs, syntax findings, and the message and data sets read from it) for the bench's stream, the same
stream with one bit in 500 flipped, and with characters dropped (fixed seed); the same digest before and
after a change means the same results bit for bit.
"""
import argparse
import statistics
import time

import numpy as np

from rig import _framing, _framing_model
from rig.protocol import Data, DataSet, message_from_frame, messages_from_frames


def make_stream(n: int) -> bytes:
    msgs = []
    for i in range(n):
        d = Data.of(DataSet(f"1.8.{i % 10}", f"{i * 7919 % 10**9:012d}", "kWh"),
                    DataSet("C.1.0", f"{i:08d}"), DataSet("0.9.1", f"{i % 24:02d}:{i % 60:02d}:00"),
                    DataSet("F.F", "00000000"), DataSet("96.1.0", f"SN{i:010d}"))
        msgs.append(d.to_bytes(parity=True))
    return b"".join(msgs)


def run_rig(wire):
    return messages_from_frames(_framing.Framer("even").feed(wire))


def run_rig_sets(wire):
    msgs = run_rig(wire)
    for m in msgs:
        m.datasets
    return msgs


def run_framer(wire):
    return _framing.Framer("even").feed(wire)


def run_records(wire):
    recs, chars = _framing.Framer("even").feed_records(wire)
    return recs


def run_model(wire):
    fr = _framing_model.FramerModel("even")
    return [message_from_frame(f) for f in fr.feed(wire)]


STRIP = bytes(range(128)) * 2


def run_library(wire, AnswerDataMessage):
    text = wire.translate(STRIP)
    out, i, n = [], 0, len(text)
    while i < n:
        j = text.index(b"\x03", i) + 2
        out.append(AnswerDataMessage.from_bytes(text[i:j]))
        i = j
    return out


def run_library_reader(wire, lib):
    """The library's own framing path: BaseTransport.read() (one recv(1) per character, BCC
    check) and AnswerDataMessage.from_bytes, over an in-memory transport fed the stripped bytes."""
    text = wire.translate(STRIP)

    class Memory(lib.transports.BaseTransport):
        def __init__(self):
            super().__init__(timeout=30)
            self.pos = 0

        def _recv(self, chars):
            out = text[self.pos:self.pos + chars]
            self.pos += chars
            return out

        def _send(self, data):
            pass

    t = Memory()
    out = []
    while t.pos < len(text):
        out.append(lib.messages.AnswerDataMessage.from_bytes(t.read()))
    return out


def digest() -> str:
    import hashlib
    import random
    rnd = random.Random(16)
    clean = make_stream(2000)
    flipped = bytes(b ^ (1 << rnd.randrange(8)) if rnd.random() < 0.002 else b for b in clean)
    dropped = bytes(b for b in clean if rnd.random() >= 0.002)
    h = hashlib.sha256()
    for wire in (clean, flipped, dropped):
        times = np.arange(len(wire), dtype=np.int64) * 1000
        for f in _framing.Framer("even").feed(wire, times):
            h.update(repr((f.kind, f.data, f.start, f.end, f.t_first_ns, f.t_last_ns, f.max_gap_ns,
                           f.parity_errors, f.parity_at, f.syntax_reason, f.syntax_field, f.syntax_at,
                           f.bcc_expected, f.bcc_received, f.ok, f.partial, f.errors_list())).encode())
            try:
                m = message_from_frame(f)
                h.update(repr((type(m).__name__, getattr(m, "datasets", None))).encode())
            except Exception as e:  # a frame that is no message is an output too
                h.update(repr((type(e).__name__, str(e))).encode())
    return h.hexdigest()


def best_of(fn, wire, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        out = fn(wire)
        times.append(time.perf_counter_ns() - t0)
    return min(times), statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--digest", action="store_true", help="print the digest of the framer's outputs and stop")
    args = ap.parse_args()
    if args.digest:
        print(digest())
        return
    wire = make_stream(args.messages)
    mb = len(wire) / 1e6
    print(f"{args.messages} data messages, {len(wire)} wire bytes (7E1), "
          f"{len(wire) / args.messages:.1f} bytes each; best of {args.repeat}")
    cols = [("rig", run_rig), ("rig+sets", run_rig_sets), ("framer", run_framer),
            ("records", run_records)]
    try:
        import iec62056_21.messages
        import iec62056_21.transports
        from iec62056_21.messages import AnswerDataMessage
        cols.append(("iec62056-21", lambda w: run_library(w, AnswerDataMessage)))
        cols.append(("lib reader", lambda w: run_library_reader(w, iec62056_21)))
    except ImportError:
        print("iec62056-21: not installed in this environment (pip install iec62056-21); column skipped")
    cols.append(("model", run_model))
    results = {}
    for name, fn in cols:
        reps = args.repeat if name not in ("model", "lib reader") else max(1, args.repeat // 3)
        best, med, out = best_of(fn, wire, reps)
        assert len(out) == args.messages, (name, len(out))
        results[name] = best
        print(f"{name:12s} {mb / (best / 1e9):10.1f} MB/s   best {best / 1e6:8.2f} ms   median {med / 1e6:8.2f} ms")
    print("ratios (higher is faster for the first named):")
    for other in ("iec62056-21", "lib reader", "model"):
        if other in results:
            for name in ("rig", "rig+sets", "framer", "records"):
                print(f"  {name} / {other}: {results[other] / results[name]:8.1f}x")


if __name__ == "__main__":
    main()
