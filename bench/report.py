#!/usr/bin/env python3
"""Combine the per-step JSON files of bench/run into one table or JSON object.

    report.py DIR [--json]

DIR holds NAME.json for each step that succeeded (noop, incr, latency,
memory, memory_c8, celery, pipeline, parser, ratelimit, web) and loadavg.before,
loadavg.after, started, elapsed.
"""

import json
import os
import platform
import sys

# The targets on the 2-core machine.
DRAIN_VS_CELERY = 5.0
DRAIN_VS_CEILING = 0.90
P99_MS_AT_1000 = 10.0
RSS_MB_UNDER_LOAD = 30.0
BACKFILL_VS_FLOOR = 1.2
WEB_P99_MS = 100.0


def load(d, name):
    try:
        with open(os.path.join(d, name + ".json")) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


def text(d, name):
    try:
        with open(os.path.join(d, name)) as f:
            return f.read().strip()
    except OSError:
        return None


def machine(d):
    m = {
        "date": text(d, "started"),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_before": text(d, "loadavg.before"),
        "loadavg_after": text(d, "loadavg.after"),
        "elapsed_s": int(text(d, "elapsed") or 0),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            m["memory_gib"] = round(kb / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        import redis

        url = os.environ.get("CELERYBENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
        m["redis"] = redis.Redis.from_url(url).info("server").get("redis_version")
    except Exception:
        pass
    try:
        import kombu

        url = os.environ.get(
            "CELERYBENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"
        )
        with kombu.Connection(url) as c:
            c.connect()
            v = c.connection.server_properties.get("version")
            m["rabbitmq"] = v.decode() if isinstance(v, bytes) else v
    except Exception:
        pass
    return m


def get(obj, *path):
    for p in path:
        if obj is None:
            return None
        if isinstance(p, int):
            obj = obj[p] if isinstance(obj, list) and len(obj) > p else None
        else:
            obj = obj.get(p) if isinstance(obj, dict) else None
    return obj


def latency_at(runs, rate):
    for r in runs or []:
        if r.get("rate") == rate:
            return r
    return None


def targets(r):
    af, ce = r["alertflow"], r["celery"]
    out = []

    def add(name, met, detail):
        out.append({"target": name, "met": met, "detail": detail})

    incr_drain = get(af, "incr", "drain_per_s")
    celery_drains = [
        p.get("drain_per_s") for p in (get(ce, "pools") or {}).values()
        if p.get("drain_per_s")
    ]
    if incr_drain and celery_drains:
        best = max(celery_drains)
        add(
            f"drain >= {DRAIN_VS_CELERY:g}x Celery (same INCR body)",
            incr_drain >= DRAIN_VS_CELERY * best,
            f"{incr_drain:,.0f}/s vs best Celery pool {best:,.0f}/s = {incr_drain / best:.1f}x",
        )
    noop, ceil = get(af, "noop", "drain_per_s"), get(af, "noop", "ceiling_consume_per_s")
    if noop and ceil:
        incr_ratio = get(af, "incr", "drain_ratio")
        extra = f"; INCR body {incr_ratio:.2f}" if incr_ratio else ""
        add(
            f"no-op drain >= {DRAIN_VS_CEILING:.0%} of the broker ceiling",
            noop >= DRAIN_VS_CEILING * ceil,
            f"{noop:,.0f}/s vs {ceil:,.0f}/s raw consume = {noop / ceil:.2f}{extra}",
        )
    lat = latency_at(get(af, "latency", "runs"), 1000)
    if lat:
        add(
            f"p99 latency at 1,000/s < {P99_MS_AT_1000:g} ms",
            lat["p99_ms"] < P99_MS_AT_1000,
            f"p99 {lat['p99_ms']:.2f} ms (p50 {lat['p50_ms']:.2f}, max {lat['max_ms']:.2f})",
        )
    for key in ("memory", "memory_c8"):
        m = af.get(key)
        if m:
            add(
                f"worker RSS < {RSS_MB_UNDER_LOAD:g} MB under load (-c {m['concurrency']})",
                m["load_rss_peak_mb"] < RSS_MB_UNDER_LOAD,
                f"{m['load_rss_peak_mb']:.1f} MB peak, {m['idle_rss_mb']:.1f} MB idle",
            )
    w = af.get("web")
    if w:
        add(
            f"web overview p99 < {WEB_P99_MS:g} ms",
            w["p99_ms"] < WEB_P99_MS,
            f"p99 {w['p99_ms']:.1f} ms (p50 {w['p50_ms']:.1f}, max {w['max_ms']:.1f})",
        )
    p = af.get("pipeline")
    if p:
        add(
            f"backfill within {BACKFILL_VS_FLOOR:g}x the quota floor",
            p["floor_ratio"] <= BACKFILL_VS_FLOOR,
            f"{p['wall_s']:.1f} s vs {p['quota_floor_s']:.1f} s floor = {p['floor_ratio']:.2f}x",
        )
    return out


def table(headers, rows):
    widths = [len(h) for h in headers]
    for row in rows:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.rjust(widths[i]) if i else c.ljust(widths[i]) for i, c in enumerate(cells)
    ).rstrip()
    print(fmt(headers))
    for row in rows:
        print(fmt(row))


def n(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)


def print_text(r):
    m, af, ce = r["machine"], r["alertflow"], r["celery"]
    pools = get(ce, "pools") or {}
    pre, thr = pools.get("prefork", {}), pools.get("threads", {})
    pre_c, thr_c = pre.get("concurrency", "?"), thr.get("concurrency", "?")
    print(
        f"alertflow benchmarks, {m.get('date')}: {m.get('cores')} cores"
        f" ({m.get('cpu', '?')}), {m.get('memory_gib', '?')} GiB,"
        f" RabbitMQ {m.get('rabbitmq', '?')}, Redis {m.get('redis', '?')},"
        f" Celery {get(ce, 'celery_version') or '-'}"
    )
    print(
        f"load average before {m.get('loadavg_before')} / after {m.get('loadavg_after')};"
        f" {m.get('elapsed_s')} s"
    )
    tasks = get(af, "incr", "tasks") or get(ce, "tasks")
    print(f"\n1. Throughput, {n(tasks)} tasks, tasks/s (alertflow: medians of "
          f"{get(af, 'incr', 'rounds') or '-'} rounds, worker -c {get(af, 'incr', 'concurrency') or '-'})")
    table(
        ["", "alertflow noop", "alertflow INCR", f"Celery prefork -c{pre_c}",
         f"Celery threads -c{thr_c}", "raw lapin ceiling (noop / INCR run)"],
        [
            ["enqueue, confirmed", n(get(af, "noop", "enqueue_per_s")),
             n(get(af, "incr", "enqueue_per_s")), n(get(ce, "enqueue_confirmed_per_s")),
             "(same publisher)",
             f'{n(get(af, "noop", "ceiling_publish_per_s"))} / {n(get(af, "incr", "ceiling_publish_per_s"))}'],
            ["enqueue, no confirms", "-", "-", n(get(ce, "enqueue_unconfirmed_per_s")),
             "(same publisher)", "-"],
            ["drain (acks late)", n(get(af, "noop", "drain_per_s")),
             n(get(af, "incr", "drain_per_s")), n(pre.get("drain_per_s")),
             n(thr.get("drain_per_s")),
             f'{n(get(af, "noop", "ceiling_consume_per_s"))} / {n(get(af, "incr", "ceiling_consume_per_s"))}'],
        ],
    )
    print("\n2. Latency, enqueue -> task start, ms (p50 / p99 / max; achieved rate)")
    rows = []
    for rate in sorted({x["rate"] for x in (get(af, "latency", "runs") or [])}
                       | {x["rate"] for p in pools.values() for x in p.get("latency", [])}):
        def cell(run):
            if not run:
                return "-"
            return (f"{run['p50_ms']:.2f} / {run['p99_ms']:.2f} / {run['max_ms']:.2f}"
                    f" ({run['offered_per_s']:,.0f}/s)")
        rows.append([
            f"{rate:,}/s offered",
            cell(latency_at(get(af, "latency", "runs"), rate)),
            cell(latency_at(pre.get("latency"), rate)),
            cell(latency_at(thr.get("latency"), rate)),
        ])
    table(["", "alertflow", f"Celery prefork -c{pre_c}", f"Celery threads -c{thr_c}"], rows)

    print("\n3. Worker memory, RSS MB (Celery: whole process tree; PSS in brackets)")
    mem, mem8 = af.get("memory") or {}, af.get("memory_c8") or {}

    def celery_mem(p, rss_key, pss_key):
        v, pss = p.get(rss_key), p.get(pss_key)
        return "-" if v is None else f"{v:.1f} ({pss:.1f})"
    table(
        ["", f"alertflow -c{mem.get('concurrency', '?')}",
         f"alertflow -c{mem8.get('concurrency', '?')}",
         f"Celery prefork -c{pre_c}", f"Celery threads -c{thr_c}"],
        [
            ["idle", n(mem.get("idle_rss_mb"), "{:.1f}"), n(mem8.get("idle_rss_mb"), "{:.1f}"),
             celery_mem(pre, "idle_rss_mb", "idle_pss_mb"),
             celery_mem(thr, "idle_rss_mb", "idle_pss_mb")],
            [f"draining {n(mem.get('tasks'))} tasks (peak)",
             n(mem.get("load_rss_peak_mb"), "{:.1f}"),
             n(mem8.get("load_rss_peak_mb"), "{:.1f}"),
             celery_mem(pre, "load_rss_peak_mb", "load_pss_peak_mb"),
             celery_mem(thr, "load_rss_peak_mb", "load_pss_peak_mb")],
        ],
    )

    p = af.get("pipeline")
    print("\n4. Pipeline backfill against the sandbox (50 requests/s quota)")
    if p:
        table(
            ["", "measured", "reference", "ratio"],
            [
                [f"{p['days']} days x {p['per_day']:,} messages ({p['pages']} pages) wall s",
                 f"{p['wall_s']:.1f}", f"{p['quota_floor_s']:.1f} quota floor",
                 f"{p['floor_ratio']:.2f}"],
                ["insert path rows/s", n(p["insert_rows_per_s"]),
                 f"{p['bare_insert_rows_per_s']:,.0f} bare INSERT", f"{p['insert_ratio']:.2f}"],
                ["end-to-end rows/s", n(p["pipeline_rows_per_s"]), "-", "-"],
            ],
        )
    else:
        print("  (failed; see the log)")

    q = af.get("parser")
    print("\n5. Parser, one core")
    if q:
        print(f"  {q['cards_per_s']:,.0f} cards/s ({q['us_per_card']:.1f} us per card); "
              f"{q['messages_per_s']:,.0f} messages/s, {q['rows_per_s']:,.0f} rows/s")
    else:
        print("  (failed; see the log)")

    rl = af.get("ratelimit")
    print("\n6. Rate limiter (GCRA script in Redis)")
    if rl:
        print(f"  {rl['decisions_per_s']:,.0f} decisions/s with {rl['clients']} clients; "
              f"Redis {rl['evalsha_usec_per_call']:.1f} us script time and "
              f"{rl['redis_cpu_us_per_decision']:.1f} us process CPU per decision")
        print(f"  {rl['admission_clients']} clients on {rl['admission_limit_per_s']}/s burst "
              f"{rl['admission_burst']} for {rl['admission_span_s']:.2f} s: admitted "
              f"{rl['admitted']:,} of an exact allowance of {rl['allowance']:,}")
    else:
        print("  (failed; see the log)")

    w = af.get("web")
    print("\n7. Web overview (alertflow web, in-process)")
    if w:
        print(f"  {w['requests']} requests over {w['states']:,} task states, {w['workers']} workers, "
              f"{w['days']} days of runs: p50 {w['p50_ms']:.1f} / p95 {w['p95_ms']:.1f} / "
              f"p99 {w['p99_ms']:.1f} / max {w['max_ms']:.1f} ms; {w['page_bytes']:,} bytes; "
              f"SCAN/KEYS on the Redis meanwhile: {w['redis_scans']}")
    else:
        print("  (failed; see the log)")

    print("\nTargets")
    for t in r["targets"]:
        print(f"  [{'met' if t['met'] else 'NOT met':>7}] {t['target']}: {t['detail']}")
    if r["failed"]:
        print(f"\nFailed steps: {', '.join(r['failed'])}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    steps = ["noop", "incr", "latency", "memory", "memory_c8", "pipeline", "parser", "ratelimit", "web"]
    af = {s: load(d, s) for s in steps}
    ce = load(d, "celery")
    r = {
        "machine": machine(d),
        "alertflow": af,
        "celery": ce,
        "failed": [s for s in steps + ["celery"] if (ce if s == "celery" else af[s]) is None],
    }
    r["targets"] = targets(r)
    if "--json" in sys.argv[2:]:
        print(json.dumps(r))
    else:
        print_text(r)


if __name__ == "__main__":
    main()
