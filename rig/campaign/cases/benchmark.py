"""Benchmarks: the DUT's reaction-time and token-execution-time distributions; the rig's throughput."""
from __future__ import annotations

import time

import numpy as np

from rig.campaign.registry import case, needs, params, summary, virtual_line


def _distribution(ctx, name, values, unit, low=None, high=None, basis=""):
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not len(v):
        ctx.check(f"{name}: values", False)
        return
    ctx.info(f"{name} n", int(len(v)), "count")
    for q in (50, 90, 99):
        ctx.info(f"{name} p{q}", float(np.percentile(v, q)), unit)
    ctx.info(f"{name} mean", float(v.mean()), unit)
    ctx.info(f"{name} std", float(v.std()), unit)
    ctx.measure(f"{name} min", float(v.min()), unit, low, None, basis)
    ctx.measure(f"{name} max", float(v.max()), unit, None, high, basis)


@params(reads=("reads of tokenStatus per step, each one tr measurement", ""))
@case("benchmark/reaction_time", clause="IEC 62055-52 §6.7 server timing (tr)",
      title="the DUT's reaction time tr: a distribution over many reads", params={"reads": 10})
def reaction_time(ctx):
    hhu = ctx.bench.session()
    for _ in range(ctx.params["reads"]):
        _, ex = hhu.read("tokenStatus")
        ctx.info("tr", ex.tr_ns / 1e6, "ms")
    ctx.exchanges(hhu.exchanges)


@summary("benchmark/reaction_time")
def reaction_summary(ctx, steps):
    t = ctx.profile.timing
    tr = [m.value for s in steps for m in s.measurements if m.name == "tr"]
    lo = t.tr_min_for(ctx.profile.identification.manufacturer)
    _distribution(ctx, "tr", tr, "ms", lo / 1e6, t.tr_max_ns / 1e6, f"timing.tr ({ctx.profile.source('timing.tr_max')})")


@params(tokens=("accepted tokens transferred per step", ""))
@needs("embedded only (tokens issued to the emulator)", virtual_line("accepted tokens are issued to the emulator"))
@case("benchmark/token_execution", clause="IEC 62055-52 §6.7 message execution timing",
      title="the DUT's token execution time: a distribution over many tokens", params={"tokens": 3})
def token_execution(ctx):
    b = ctx.bench
    hhu = b.session()
    for t in b.accepted_tokens(ctx.params["tokens"]):
        r = hhu.transfer_token(t)
        ctx.exchanges(r.exchanges)
        ctx.info("execution", (r.execution_ns or 0) / 1e6, "ms")


@summary("benchmark/token_execution")
def execution_summary(ctx, steps):
    t = ctx.profile.timing
    ex = [m.value for s in steps for m in s.measurements if m.name == "execution"]
    _distribution(ctx, "execution", ex, "ms", 0, t.execution_limit_ns / 1e6,
                  f"timing.execution_limit ({ctx.profile.source('timing.execution_limit')})")


@params(reads=("reads of tokenStatus per step", ""))
@case("benchmark/throughput", clause="(the rig itself)",
      title="the rig's throughput: exchanges per second and its own overhead per exchange",
      params={"reads": 20})
def throughput(ctx):
    hhu = ctx.bench.session()
    n = ctx.params["reads"]
    t0 = time.perf_counter()
    line_ns = 0
    overhead = []
    prev_end = None
    for _ in range(n):
        _, ex = hhu.read("tokenStatus")
        char = hhu.port.char_ns
        line_ns += (len(ex.request) + len(ex.answer)) * char
        if prev_end is not None:  # time the rig took between an answer and its next request, beyond tr_min
            overhead.append((ex.request_start_ns - prev_end - ctx.profile.timing.tr_min_fast_ns) / 1e6)
        prev_end = ex.answer_last_ns
    dt = time.perf_counter() - t0
    ctx.exchanges(hhu.exchanges)
    ctx.info("exchanges per second", n / dt, "1/s")
    ctx.info("line busy", line_ns / 1e9 / dt, "fraction")
    if overhead:
        ctx.info("rig overhead between exchanges, mean", float(np.mean(overhead)), "ms")
        ctx.info("rig overhead between exchanges, max", float(np.max(overhead)), "ms")
