"""Timing bench: how exactly the rig times what it sends, over the virtual line at 9600 Bd.

0. The clock alone: sleep to a deadline 1 ms ahead, error = wake time minus deadline;
   rig._clock.sleep_until against time.sleep(), alternating, in one thread.
1. Reaction time: one side sends a request, the other answers exactly TR after the end of the
   request as it received it. Measured three ways: when the answerer's write went out (the clock in
   place), on the line (the virtual line's wire record, as a scope on the line sees it: end of the
   request's last character to start of the answer's first), and by the requester from the arrival
   of the characters. The error is measured minus scheduled. Two answerers in the same run,
   alternating: the rig (rig._clock: sleep_until, then write) and a plain time.sleep() version.
2. Inter-character gaps: an answer of 20 characters with GAP between characters; the receiver
   measures the gaps. The rig (rig._clock.write_paced) against time.sleep() per character.
3. The rig's own overhead per exchange (client and meter emulator threads' CPU time, HHU reading
   tokenStatus from the emulator) as a share of the line time of the exchange.

Run: python benches/timing.py [--rounds 200]
Over the line, errors include the virtual line's own latency (pty hops, thread wake-ups): both
columns carry it alike, and the bench prints it (the line's share of the reaction path).
"""
import argparse
import ctypes
import os
import resource
import threading
import time

import numpy as np

from rig import _clock, _framing
from rig.exchange import FrameReader
from rig.link import Port, VirtualLine

BAUD = 9600
TR_NS = 20_000_000
GAP_NS = 2_000_000


_libc = ctypes.CDLL(None)


def default_timer_slack(on: bool) -> None:
    """The time.sleep() column runs as plain code would: with Linux's default 50 us timer slack
    (rig._clock sets 1 us for the threads of a rig process)."""
    _libc.prctl(29, 50_000 if on else _clock.TIMER_SLACK_NS, 0, 0, 0)  # PR_SET_TIMERSLACK


def answer_rig(port, wire, at_ns):
    return _clock.write_at(port.fd, wire, at_ns) - at_ns


def answer_sleep(port, wire, at_ns):
    time.sleep(max(0, at_ns - time.monotonic_ns()) / 1e9)
    os.write(port.fd, wire)
    return time.monotonic_ns() - at_ns


def paced_rig(port, wire, times):
    return list(_clock.write_paced(port.fd, wire, times) - times)


def paced_sleep(port, wire, times):
    sent = []
    for k, t in enumerate(times):
        time.sleep(max(0, int(t) - time.monotonic_ns()) / 1e9)
        os.write(port.fd, wire[k:k + 1])
        sent.append(time.monotonic_ns() - int(t))
    return sent


def clock_alone(rounds):
    """Deadline 1 ms ahead, error = wake time - deadline; the two sleepers alternate."""
    errors = {"rig": [], "time.sleep": []}
    for i in range(rounds):
        name = "rig" if i % 2 == 0 else "time.sleep"
        default_timer_slack(name == "time.sleep")
        t = _clock.now_ns() + 1_000_000
        if name == "rig":
            _clock.sleep_until(t)
        else:
            time.sleep(max(0, t - time.monotonic_ns()) / 1e9)
        errors[name].append(time.monotonic_ns() - t)
    default_timer_slack(False)
    return errors


def stats(errors_ns):
    a = np.abs(np.asarray(errors_ns, dtype=np.float64)) / 1e3
    return np.percentile(a, 50), np.percentile(a, 99), a.max()


class LineProcess:
    """The virtual line run by `rig line` in its own process (no GIL shared with the bench)."""

    def __enter__(self):
        import json
        import subprocess
        import sys
        self.proc = subprocess.Popen([sys.executable, "-m", "rig", "line", "--json"], stdout=subprocess.PIPE, text=True)
        paths = json.loads(self.proc.stdout.readline())
        self.hhu_port, self.meter_port = paths["hhu_port"], paths["meter_port"]
        return self

    def __exit__(self, *exc):
        import signal
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)


def reaction_and_gaps(rounds, line_process=False):
    """The answerer runs in its own thread, as a meter would; the requester measures."""
    request = _framing.encode_command("R", "1", "04()")
    answer = _framing.add_parity(_framing.encode_data("04(0)"))
    long_answer = _framing.add_parity(_framing.encode_data("C003(0123456789AB)"))
    names = ("rig", "time.sleep")
    errors = {n: [] for n in names}
    gap_errors = {n: [] for n in names}
    send_errors = {n: [] for n in names}
    wire_errors = {n: [] for n in names}
    wire_gap_errors = {n: [] for n in names}
    line_ns = []      # the line's own share of a reaction: request end -> answerer, answerer -> line
    seen = []         # (name, when the answerer had the request, when its write went out)
    with (LineProcess() if line_process else VirtualLine()) as line:
        hhu = Port(line.hhu_port, baud=BAUD)
        meter = Port(line.meter_port, baud=BAUD)
        hhu_reader = FrameReader(hhu, _framing.Framer("even"), ta_ns=1_500_000_000)
        meter_reader = FrameReader(meter, _framing.Framer("even"), ta_ns=1_500_000_000)
        char_ns = hhu.char_ns
        plan = []  # what the answerer does for each request it gets

        def answerer():
            for name, what in plan:
                frame = meter_reader.next_frame(_clock.now_ns() + 5_000_000_000)
                default_timer_slack(name == "time.sleep")
                if what == "tr":
                    err = (answer_rig if name == "rig" else answer_sleep)(meter, answer, frame.t_last_ns + TR_NS)
                    send_errors[name].append(err)
                    seen.append((frame.t_last_ns, frame.t_last_ns + TR_NS + err))
                else:
                    sched = _clock.schedule(frame.t_last_ns + TR_NS, len(long_answer), char_ns + GAP_NS)
                    send_errors[name] += (paced_rig if name == "rig" else paced_sleep)(meter, long_answer, sched)

        for i in range(rounds):
            name = "rig" if i % 2 == 0 else "time.sleep"
            plan += [(name, "tr"), (name, "gap")]
        thread = threading.Thread(target=answerer)
        thread.start()
        wire = hasattr(line, "record")
        for name, what in plan:
            if wire:
                line.clear_record()
            sent = hhu.write(request, at_ns=_clock.now_ns() + 5_000_000)
            req_end = int(sent[-1]) + char_ns
            if what == "tr":
                got = hhu_reader.next_frame(_clock.now_ns() + 2_000_000_000)
                errors[name].append(got.t_first_ns - char_ns - req_end - TR_NS)
            else:  # every gap between the characters of the answer
                data, times = b"", []
                deadline = _clock.now_ns() + 2_000_000_000
                while len(data) < len(long_answer) and _clock.now_ns() < deadline:
                    d, t = hhu.read(deadline, max_bytes=len(long_answer) - len(data))
                    data += d
                    times += list(t)
                gap_errors[name] += list(np.diff(np.array(times)) - (char_ns + GAP_NS))
            if wire:  # the same exchange as the line carried it
                rec = line.record()
                req = [c for c in rec if c.direction == "to_meter"]
                ans = [c for c in rec if c.direction == "to_hhu"]
                if what == "tr":
                    wire_errors[name].append(ans[0].t_start_ns - req[-1].t_end_ns - TR_NS)
                    line_ns.append((req[-1].t_end_ns, ans[0].t_start_ns))
                else:
                    starts = np.array([c.t_start_ns for c in ans])
                    wire_gap_errors[name] += list(np.diff(starts) - (char_ns + GAP_NS))
        thread.join()
        hhu.close()
        meter.close()
    # the line's own share: from the request's end on the line to the answerer having it, and from
    # the answerer's write to the answer on the line (pty hops, the bridge's and answerer's wake-ups)
    share = [(t_seen - end) + (start - t_sent) for (end, start), (t_seen, t_sent) in zip(line_ns, seen)]
    return send_errors, wire_errors, errors, gap_errors, wire_gap_errors, share


def overhead(exchanges):
    from rig.client import Client
    from rig.embedded import EmbeddedMeter
    from rig.profile import load_profile
    from rig.server import MeterEmulator, TimingPolicy

    profile = load_profile()
    emu = MeterEmulator(profile, policy=TimingPolicy("min"))
    with EmbeddedMeter(profile, emulator=emu) as meter, Client(meter.hhu_port, profile) as hhu:
        hhu.identify()
        server_clock = time.pthread_getcpuclockid(meter.server._thread.ident)
        r0 = resource.getrusage(resource.RUSAGE_THREAD)
        c0, s0 = time.thread_time_ns(), time.clock_gettime_ns(server_clock)
        line_ns = latency_ns = 0
        for _ in range(exchanges):
            # when the request could have gone out: now, or tr_min after the last answer
            ready = max(_clock.now_ns(), hhu._last_end_ns + profile.timing.tr_min_fast_ns)
            _, ex = hhu.read("tokenStatus")
            done = _clock.now_ns()
            line_ns += (len(ex.request) + len(ex.answer)) * hhu.port.char_ns
            # the rig's own delay: before the request goes out, and after the answer is in
            latency_ns += (ex.request_start_ns - ready) + (done - ex.answer_last_ns)
        client_cpu = time.thread_time_ns() - c0
        server_cpu = time.clock_gettime_ns(server_clock) - s0
        r1 = resource.getrusage(resource.RUSAGE_THREAD)
        hhu.sign_off()
    client_user = int((r1.ru_utime - r0.ru_utime) * 1e9)
    return client_cpu, client_user, server_cpu, line_ns, latency_ns


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--exchanges", type=int, default=50)
    ap.add_argument("--line-process", action="store_true",
                    help="run the virtual line in its own process (`rig line`) instead of a thread")
    args = ap.parse_args()
    print(f"virtual line at {BAUD} Bd; reaction target tr = {TR_NS / 1e6:g} ms, "
          f"gap target = char + {GAP_NS / 1e6:g} ms; {args.rounds} rounds, alternating")
    sends, wire, errors, gaps, wire_gaps, share = reaction_and_gaps(args.rounds, args.line_process)
    tables = [("the clock alone: sleep to a deadline 1 ms ahead (woke - deadline)", clock_alone(10 * args.rounds)),
              ("send time of an answer tr after the request (write returned - scheduled)", sends),
              ("reaction time on the line (wire record, as a scope on the line sees it)", wire),
              ("reaction time as the requester measures it (arrival of characters)", errors),
              ("inter-character gap on the line (wire record)", wire_gaps),
              ("inter-character gap as the receiver measures it", gaps)]
    for title, table in tables:
        if not all(table.values()):
            continue  # the wire record is not there with --line-process
        print(f"{title}, |error| in us:")
        res = {}
        for name, errs in table.items():
            res[name] = stats(errs)
            print(f"  {name:11s} p50 {res[name][0]:8.1f}   p99 {res[name][1]:8.1f}   max {res[name][2]:8.1f}")
        print(f"  time.sleep / rig at p99: {res['time.sleep'][1] / res['rig'][1]:.1f}x")
    if share:
        p50, p99, mx = stats(share)
        print(f"the line's own latency in a reaction (request end on the line -> answerer has it, plus its "
              f"write -> answer on the line), us: p50 {p50:.1f}   p99 {p99:.1f}   max {mx:.1f}")
    c, cu, s, line_ns, lat = overhead(args.exchanges)
    print(f"overhead over {args.exchanges} exchanges (read tokenStatus): line time {line_ns / 1e6:.1f} ms")
    print(f"  delay the rig adds to the exchanges (request out after it could go, result back after the "
          f"answer is in): {lat / 1e6:.2f} ms = {100 * lat / line_ns:.2f} % of the line time")
    print(f"  client CPU {c / 1e6:.1f} ms = {100 * c / line_ns:.2f} % of the line time "
          f"(user {100 * cu / line_ns:.2f} %, kernel {100 * (c - cu) / line_ns:.2f} %: a wake-up per character)")
    print(f"  meter emulator CPU {s / 1e6:.1f} ms = {100 * s / line_ns:.2f} %")
    print(f"  both: {100 * (c + s) / line_ns:.2f} % of the line time")


if __name__ == "__main__":
    main()
