"""Bench: UART waveform decoding, rig._uart vs the plain numpy decoder vs sigrok-cli, in one run.

Captures of 1 M, 10 M and 50 M float32 samples at 10 and 100 samples per bit, 7E1 at 9600 Bd,
current loop, with noise (rms 2 % of the swing), baud error (+1.5 %), jitter (0.03 UI rms) and a
first-order edge (0.05 UI).  Each capture is written to a .npy file; every decoder runs in its own
subprocess so its peak memory (ru_maxrss minus the RSS before decoding) is its own, and with
OPENBLAS_NUM_THREADS=1 (as the rig command sets it: numpy's BLAS worker otherwise spins on the second
CPU for the first tenth of a second after import, which is the whole run; no decoder here uses BLAS):

- rig:    rig.physical.analysis.decode() on the file path as a user calls it: read in 1 M-sample chunks
          through a memory map, with every timing and level measurement, on one thread;
- numpy:  rig.physical.model.decode_model() on the memory-mapped file (one piece);
- sigrok: sigrok-cli's uart decoder fed the thresholded capture as a 1-channel binary logic file
          (thresholding not timed); skipped with a note when sigrok-cli is absent.

Rates are the capture's actual number of samples over the time (the synthesised capture of "5e7" has
49.26 M samples: the characters that fit).  A "floor" line per capture gives what just reading it costs
here: the same memory-mapped 1 M-sample chunks summed (numpy), and a sum over it already in memory
(memory bandwidth of one core).

    python benches/waveform.py [--sizes 1e6,1e7,5e7] [--spb 10,100] [--numpy-max 5e7] [--sigrok-max 5e7]
                               [--repeat 3] [--no-floor]

Heavy noise (``--noise``): captures of ``--noise-size`` samples (default 5e5) at 10 and 16 samples per
bit with white Gaussian noise of 0.05 to 0.4 of the swing (rms, unclipped), characters back to back;
the characters each decoder gets wrong (the decoded text aligned with the sent one): rig's decode()
(the speed given, and auto), the plain numpy comparator decoder, sigrok-cli on the capture thresholded
at mid-swing, and a receiver sampling once at each bit's middle with the true timing (the reference
the issue names: where it fails, rig must not).

    python benches/waveform.py --noise [--noise-size 5e5] [--noise-levels 0.05,0.1,0.2,0.3,0.4] [--spb 10,16]

Builds side by side (``--ab``): rig._uart builds given as NAME=PATH.so[@LEVEL] (LEVEL: at most that
instruction-set level, 0 baseline, 1 AVX2), loaded into one process and run alternately on the same
capture in memory (1 M-sample chunks as decode() feeds them), best of ``--repeat`` (default 9) each, with
a digest of the characters and statistics (the same digest: the same results).

    python benches/waveform.py --ab before=/tmp/old_uart.so after=rig/_uart.*.so --sizes 24e6 --spb 10,100

Digest (``--digest``): sha256 over every output of rig._uart (characters, edges, statistics, glitches,
histogram; given and auto speed; whole and cut at and off 64-sample blocks) and of decode(), over 135
varied captures (7-100 samples/bit, clean / noisy / heavy noise, baud error -4/0/+4 %, breaks,
glitches, the three interface options), at every instruction-set level the build has.  Compare the
line before and after a change of ext/ or the decoder's Python side.  (Not in it, so that the line
stays comparable with older builds: the fit edges, take_fit_edges, which the tests hold to the
statistics and to the numpy model.)

    python benches/waveform.py --digest
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

BAUD = 9600


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> bool:
    """Reset the peak RSS (VmHWM) so that what the parent held before exec does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def vm_hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def child(kind: str, path: str, fs: float) -> None:
    """Runs in a subprocess: decode, print JSON with time, peak memory and the characters' digest."""
    import rig.physical.analysis as an  # noqa: F401  (imports before the baseline)
    import rig.physical.model as mo
    import rig._uart  # noqa: F401
    if kind == "floor":
        floor(path)
        return
    reset = reset_peak()
    base = rss_now()
    t = time.perf_counter()
    if kind == "rig":
        res = an.decode(path, fs, "current-loop", BAUD, "7E1")
        vals = res.chars["value"].astype(np.uint8).tobytes()
        jit = res.jitter_rms_ui
    else:
        x = np.load(path, mmap_mode="r")
        chars, _, st, _ = mo.decode_model(x, fs, BAUD, mark_is_high=True)
        vals = bytes(c["value"] for c in chars)
        jit = (st["jit_sum2"] / st["jit_n"]) ** 0.5 / st["T"] if st["jit_n"] else float("nan")
    dt = time.perf_counter() - t
    peak = vm_hwm() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"t": dt, "mem": max(0, peak - base), "n": len(vals), "hash": hashlib.sha1(vals).hexdigest(), "jit": jit,
                      "vals": vals[:64].hex()}))


def floor(path):
    """What reading the capture costs by itself: the decoder's reader (memory-mapped 1 M-sample chunks,
    pages dropped behind, one thread) with a numpy sum per chunk; then the same sum over the samples
    already in memory (one core's memory bandwidth)."""
    import rig.physical.analysis as an
    cap = an.load_capture(path)
    best_map = best_mem = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        acc = 0.0
        for c in cap.chunks(1 << 20):
            acc += float(np.add.reduce(c, dtype=np.float32))
        best_map = min(best_map, time.perf_counter() - t)
    x = np.fromfile(path, dtype=np.float32, offset=cap._npy_offset, count=cap.n)
    for _ in range(3):
        t = time.perf_counter()
        acc += float(np.add.reduce(x, dtype=np.float32))
        best_mem = min(best_mem, time.perf_counter() - t)
    print(json.dumps({"map": best_map, "mem": best_mem, "n": cap.n, "acc": acc}))


def run_child(kind, path, fs):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, "--child", kind, path, str(fs)], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_sigrok(path, fs, tmp, full=False):
    x = np.load(path, mmap_mode="r")
    binf = os.path.join(tmp, "logic.bin")
    with open(binf, "wb") as f:
        for s in range(0, len(x), 1 << 22):
            (x[s:s + (1 << 22)] > 10.5).astype(np.uint8).tofile(f)
    cmd = ["sigrok-cli", "-I", f"binary:numchannels=1:samplerate={int(fs)}", "-i", binf,
           "-P", f"uart:baudrate={BAUD}:data_bits=7:parity=even:rx=0", "-A", "uart=rx-data"]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    dt = time.perf_counter() - t
    vals = bytes(int(line.split()[-1], 16) & 0x7F for line in out.stdout.splitlines() if line.strip())
    os.unlink(binf)
    return {"t": dt, "n": len(vals), "vals": vals[:64].hex(), "hash": hashlib.sha1(vals).hexdigest(),
            **({"all": vals} if full else {})}


def make_capture(n, spb, path, seed=1):
    from rig.physical.synth import synthesize
    rng = np.random.default_rng(seed)
    nchars = int(n / (spb * 10 * 1.1)) + 2
    data = bytes(rng.integers(32, 127, nchars).astype(np.uint8))
    w = synthesize(data, "current-loop", baud=BAUD, samples_per_bit=spb, noise=0.02 * 19,
                   baud_error=0.015, jitter=0.03, rise_time=0.05 / BAUD, gap=(0.0, 2.0), seed=seed)
    w.n_samples = min(w.n_samples, n)
    w.write_npy(path, chunk=1 << 21)
    truth = bytes(c.value for c in w.chars if c.t_start_ns < (n - 11 * spb) * 1e9 / w.sample_rate)
    return w.sample_rate, truth, w.n_samples


def char_errors(got: bytes, truth: bytes) -> int:
    """Sent characters not read as sent: the decoded text aligned with the sent one."""
    from difflib import SequenceMatcher
    sm = SequenceMatcher(None, got, truth, autojunk=False)
    return len(truth) - sum(b.size for b in sm.get_matching_blocks())


def noise_bench(a) -> None:
    from rig.physical.analysis import CaptureError, decode
    from rig.physical.model import decode_model
    from rig.physical.synth import synthesize

    have_sigrok = shutil.which("sigrok-cli") is not None
    if not have_sigrok:
        print("note: sigrok-cli not found (Debian package sigrok-cli): its column is skipped")
    swing = 19.0                 # current loop: mark 20 mA, space 1 mA
    print(f"characters wrong of those sent, {int(float(a.noise_size))} samples per capture, 7E1 at {BAUD} Bd, "
          f"characters back to back")
    print(f"{'spb':>4} {'noise':>6} {'chars':>6} | {'rig 9600':>9} {'rig auto':>9} {'rig ms':>7} | {'numpy':>6} | "
          f"{'sigrok':>6} | {'mid-bit':>7} | rig decoded from")
    with tempfile.TemporaryDirectory() as tmp:
        for spb in [int(x) for x in a.spb.split(",")]:
            for nr in [float(x) for x in a.noise_levels.split(",")]:
                n = int(float(a.noise_size))
                nchars = int(n / (spb * 10)) - 4
                data = bytes(np.random.default_rng(11).integers(0x20, 0x7F, nchars).astype(np.uint8))
                w = synthesize(data, "current-loop", baud=BAUD, samples_per_bit=spb, noise=nr * swing,
                               noise_clip=None, seed=12)
                x = np.asarray(w.samples, dtype=np.float32)
                fs = w.sample_rate
                cols = []
                src = ""
                t = time.perf_counter()
                for baud in (BAUD, "auto"):
                    try:
                        res = decode(x, fs, "current-loop", baud)
                        cols.append(char_errors(bytes((res.chars["value"][res.chars["is_break"] == 0] & 0x7F)
                                                      .astype(np.uint8).tolist()), data))
                        src = src or res.level_source
                    except CaptureError as e:
                        cols.append(f"refused: {e}"[:9])
                    if baud == BAUD:
                        ms = (time.perf_counter() - t) * 1e3
                chars, *_ = decode_model(x, fs, BAUD, mark_is_high=True)
                npy = char_errors(bytes(c["value"] & 0x7F for c in chars if not c.get("is_break")), data)
                sg = "-"
                if have_sigrok:
                    path = os.path.join(tmp, "cap.npy")
                    np.save(path, x)
                    out = run_sigrok(path, fs, tmp, full=True)
                    sg = char_errors(out["all"], data)
                T = fs / BAUD
                mid = 10.5
                wrong = 0
                for c in w.chars:
                    t0 = c.t_start_ns * fs / 1e9
                    bits = [x[int(t0 + (k + 0.5) * T)] > mid for k in range(1, 8)]
                    wrong += sum(int(b) << k for k, b in enumerate(bits)) != c.value
                print(f"{spb:4d} {nr:6.2f} {len(data):6d} | {cols[0]!s:>9} {cols[1]!s:>9} {ms:7.0f} | {npy:6d} | "
                      f"{sg!s:>6} | {wrong:7d} | {src}", flush=True)


def digest_captures():
    """135 varied captures: (option, float32 samples, sample rate)."""
    from rig.physical.synth import Break, Char, synthesize
    from rig.physical.options import OPTIONS
    rng = np.random.default_rng(2026)
    k = 0
    for spb in (7, 10, 16, 33, 100):
        for noise in (0.0, 0.03, 0.12):
            for berr in (-0.04, 0.0, 0.04):
                for extra in ("clean", "breaks", "glitches"):
                    k += 1
                    items = [int(v) for v in rng.integers(0, 128, 40)]
                    if extra == "breaks":
                        items[10:10] = [Break(20)]
                        items[30:30] = [Break(13), Char(0x55, True, False)]
                    name = ["current-loop", "voltage", "optical"][k % 3]
                    w = synthesize(items, name, baud=BAUD, samples_per_bit=spb + rng.random(),
                                   noise=noise * OPTIONS[name].swing, baud_error=berr, jitter=0.03,
                                   glitches=4 if extra == "glitches" else 0, glitch_width=0.15,
                                   rise_time=0.05 / BAUD, gap=(0.0, 3.0), seed=k)
                    yield name, w.samples.astype(np.float32), w.sample_rate


def digest_outputs(x, fs, name, cuts) -> bytes:
    from rig._uart import UartDecoder
    from rig.physical.analysis import decode
    from rig.physical.options import OPTIONS
    opt = OPTIONS[name]
    d = UartDecoder(fs, BAUD, keep_edges=True, mark_is_high=opt.mark_is_high,
                    fallback_thresholds=opt.receiver_thresholds())
    out = []
    for lo, hi in zip([0] + cuts, cuts + [len(x)]):
        out += [d.feed(x[lo:hi]).tobytes(), d.take_edges().tobytes()]
    out += [d.finish().tobytes(), d.take_edges().tobytes(), repr(sorted(d.stats().items())).encode(),
            d.take_glitches().tobytes(), np.asarray(d.histogram()[0]).tobytes()]
    d2 = UartDecoder(fs, None, mark_is_high=opt.mark_is_high, fallback_thresholds=opt.receiver_thresholds())
    out += [d2.feed(x).tobytes(), d2.finish().tobytes(), repr(sorted(d2.stats().items())).encode()]
    r = decode(x, fs, name, BAUD, "7E1")
    out += [r.chars.tobytes(), repr((sorted(r.stats.items()), sorted(r.levels.items()), r.measurements,
                                     r.glitches.tobytes(), r.level_source)).encode()]
    return b"".join(out)


def digest() -> None:
    from rig import _uart
    caps = list(digest_captures())
    for level in range(_uart._simd_level(-1) + 1):
        _uart._simd_level(level)
        h = hashlib.sha256()
        n = 0
        for name, x, fs in caps:
            for cuts in ([], list(range(63, len(x), 64 * 7 + 1)), [len(x) // 3, len(x) // 3 + 1, 2 * len(x) // 3]):
                h.update(digest_outputs(x, fs, name, cuts))
                n += 1
        print(f"level {level}: {len(caps)} captures, {n} decodes, sha256 {h.hexdigest()}")
    _uart._simd_level(-1)


def ab(a) -> None:
    import importlib.util
    variants = []
    for i, arg in enumerate(a.ab):
        name, _, rest = arg.partition("=")
        so, _, lv = rest.partition("@")
        spec = importlib.util.spec_from_file_location(f"ab{i}._uart", so)
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        variants.append((name, m, int(lv) if lv else -1))
    repeat = a.repeat or 9
    with tempfile.TemporaryDirectory() as tmp:
        for spb in [int(s) for s in a.spb.split(",")]:
            for n in [int(float(s)) for s in a.sizes.split(",")]:
                path = os.path.join(tmp, "cap.npy")
                fs, truth, n = make_capture(n, spb, path)
                x = np.load(path)
                os.unlink(path)
                best, dig = {}, {}
                for r in range(repeat):
                    for name, m, lv in (variants if r % 2 == 0 else variants[::-1]):
                        m._simd_level(lv)
                        d = m.UartDecoder(fs, BAUD, mark_is_high=True)
                        t = time.perf_counter()
                        for s in range(0, n, 1 << 20):
                            d.feed(x[s:s + (1 << 20)], False)
                        ch = d.finish()
                        dt = time.perf_counter() - t
                        best[name] = min(best.get(name, dt), dt)
                        dig[name] = hashlib.sha1(ch.tobytes() + repr(sorted(d.stats().items())).encode()).hexdigest()[:12]
                first = variants[0][0]
                for name, m, lv in variants:
                    print(f"{n / 1e6:6.2f}M {spb:4d} spb  {name:>12} (level {m._simd_level(lv)}): {best[name] * 1e3:7.1f} ms "
                          f"{fmt_rate(n / best[name]):>10}  {best[first] / best[name]:.3f}x {first}  digest {dig[name]}", flush=True)
                del x


def fmt_rate(r):
    return f"{r / 1e6:8.1f} M/s" if r < 1e9 else f"{r / 1e9:8.2f} G/s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1e6,1e7,5e7")
    ap.add_argument("--spb", default="10,100")
    ap.add_argument("--numpy-max", type=float, default=5e7)
    ap.add_argument("--sigrok-max", type=float, default=5e7)
    ap.add_argument("--repeat", type=int, default=None, help="rig runs per capture (best kept; 3, --ab 9)")
    ap.add_argument("--no-floor", action="store_true", help="skip the floor line (reading the capture alone)")
    ap.add_argument("--child", nargs=3)
    ap.add_argument("--noise", action="store_true", help="characters wrong under heavy noise (see above)")
    ap.add_argument("--noise-size", default="5e5")
    ap.add_argument("--noise-levels", default="0.05,0.1,0.2,0.3,0.4")
    ap.add_argument("--ab", nargs="+", metavar="NAME=PATH[@LEVEL]", help="builds of rig._uart side by side")
    ap.add_argument("--digest", action="store_true", help="digest of every decoder output (see above)")
    a = ap.parse_args()
    if a.digest:
        digest()
        return
    if a.ab:
        ab(a)
        return
    a.repeat = a.repeat or 3
    if a.noise:
        if a.spb == "10,100":
            a.spb = "10,16"
        noise_bench(a)
        return
    if a.child:
        child(a.child[0], a.child[1], float(a.child[2]))
        return
    have_sigrok = shutil.which("sigrok-cli") is not None
    if not have_sigrok:
        print("note: sigrok-cli not found (Debian package sigrok-cli): its column is skipped")
    print(f"{'samples':>9} {'spb':>4} | {'rig':>12} {'mem MB':>7} | {'numpy':>12} {'mem MB':>7} | "
          f"{'sigrok-cli':>12} | {'rig/numpy':>9} {'rig/sigrok':>10} | chars ok")
    with tempfile.TemporaryDirectory() as tmp:
        for spb in [int(s) for s in a.spb.split(",")]:
            for n in [int(float(s)) for s in a.sizes.split(",")]:
                path = os.path.join(tmp, "cap.npy")
                fs, truth, n = make_capture(n, spb, path)
                r = min((run_child("rig", path, fs) for _ in range(a.repeat)), key=lambda d: d["t"])
                ok = [f"rig {r['n']}/{len(truth)}"]
                npy = run_child("numpy", path, fs) if n <= a.numpy_max else None
                sg = run_sigrok(path, fs, tmp) if have_sigrok and n <= a.sigrok_max else None
                if npy:
                    ok.append("numpy " + ("same" if npy["hash"] == r["hash"] else "DIFFERENT"))
                if sg:
                    ok.append(f"sigrok {sg['n']}")
                rate = n / r["t"]
                print(f"{n / 1e6:8.2f}M {spb:4d} | {fmt_rate(rate):>12} {r['mem'] / 2**20:7.1f} | "
                      + (f"{fmt_rate(n / npy['t']):>12} {npy['mem'] / 2**20:7.0f} | " if npy else
                         f"{'-':>12} {'-':>7} | ")
                      + (f"{fmt_rate(n / sg['t']):>12} | " if sg else f"{'-':>12} | ")
                      + (f"{npy['t'] / r['t']:8.1f}x " if npy else f"{'-':>9} ")
                      + (f"{sg['t'] / r['t']:9.0f}x " if sg else f"{'-':>10} ")
                      + "| " + ", ".join(ok), flush=True)
                if not a.no_floor:
                    fl = run_child("floor", path, fs)
                    print(f"{'':9} {'':4}   floor: reading it (memory map, 1 M chunks, summed) {fmt_rate(n / fl['map']).strip()}, "
                          f"summing it in memory {fmt_rate(n / fl['mem']).strip()} "
                          f"({n * 4 / fl['mem'] / 1e9:.1f} GB/s); rig takes {r['t'] / fl['map']:.1f}x the first", flush=True)
                os.unlink(path)


if __name__ == "__main__":
    main()
