#!/usr/bin/env python3
"""Celery's side of bench/run, on the same RabbitMQ and Redis as alertflow.

First, with no worker: enqueue N `bench.incr` with an apply_async loop, with
publisher confirms (alertflow's guarantee) and, separately, without (Celery's
default); the queue is purged after each. Then for each pool (prefork with
one process per core, and threads):
  1. start a worker; one warm-up task; idle RSS (whole process tree);
  2. latency at each offered rate: a paced publisher (without confirms, so
     one Python thread can offer 1,000/s) sends `bench.latency` with the
     send time in its args; the task records start - sent in Redis;
  3. stop the worker; fill the queue with N `bench.incr` (no confirms);
  4. start the worker; drain rate = tasks / time from the first increment
     seen to the counter reaching N (worker start-up excluded); RSS of the
     process tree sampled meanwhile (peak).
The run uses its own queue, exchange and Redis keys and removes them.

    bench/.venv/bin/python bench/celery_bench.py --tasks 20000 --json
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_tree_kb(pid):
    """(sum of VmRSS, sum of Pss, process count) over pid and its descendants."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    rss = pss = 0
    for p in seen:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss, len(seen)


def quantile(sorted_values, q):
    if not sorted_values:
        return 0.0
    rank = min(max(int(-(-q * len(sorted_values) // 1)), 1), len(sorted_values))
    return sorted_values[rank - 1]


class Bench:
    def __init__(self, args):
        self.args = args
        self.tag = "celerybench-" + uuid.uuid4().hex[:8]
        self.queue = self.tag
        os.environ["CELERYBENCH_QUEUE"] = self.queue
        os.environ["CELERYBENCH_PREFETCH"] = str(args.prefetch)
        sys.path.insert(0, HERE)
        import celery_tasks  # noqa: E402  (configured by the environment above)

        self.tasks = celery_tasks
        self.redis = celery_tasks.client()
        self.logdir = tempfile.mkdtemp(prefix="celerybench-")
        self.worker = None

    # -- worker process -------------------------------------------------
    def start_worker(self, pool, concurrency, label):
        cmd = [
            sys.executable, "-m", "celery", "-A", "celery_tasks", "worker",
            "-P", pool, "-c", str(concurrency), "-Q", self.queue,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-l", "warning", "-n", f"{self.tag}-{label}@%h",
        ]
        log = open(os.path.join(self.logdir, f"worker-{label}.log"), "ab")
        self.worker = subprocess.Popen(
            cmd, cwd=HERE, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()

    def stop_worker(self):
        w, self.worker = self.worker, None
        if w is None:
            return
        try:
            os.killpg(w.pid, signal.SIGTERM)
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait()
        except ProcessLookupError:
            pass
        # Prefork children left behind after a warm shutdown, if any.
        try:
            os.killpg(w.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait_counter(self, key, n, limit=120.0):
        deadline = time.monotonic() + limit
        while int(self.redis.get(key) or 0) < n:
            if self.worker is not None and self.worker.poll() is not None:
                raise RuntimeError(f"celery worker exited; see {self.logdir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"counter {key} did not reach {n}; see {self.logdir}")
            time.sleep(0.01)

    # -- measurements ---------------------------------------------------
    def enqueue(self, key, n, confirm):
        """Publish n `bench.incr`; tasks/s."""
        if confirm:
            incr = self.tasks.incr
            t = time.perf_counter()
            for _ in range(n):
                incr.apply_async(args=(key,))
        else:
            send = self.tasks.fast_app.send_task
            t = time.perf_counter()
            for _ in range(n):
                send("bench.incr", args=(key,))
        return n / (time.perf_counter() - t)

    def purge(self):
        """Declare the queue (and its exchange) if needed, and empty it."""
        with self.tasks.app.connection_for_write() as conn:
            q = self.tasks.app.amqp.queues[self.queue].bind(conn.default_channel)
            q.declare()
            q.purge()

    def latency(self, rate, seconds, run):
        key = f"{self.tag}:lat:{run}"
        n = max(1, round(rate * seconds))
        send = self.tasks.fast_app.send_task
        period = 1.0 / rate
        start = time.perf_counter()
        first = last = None
        for i in range(n):
            delay = start + i * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            last = time.perf_counter()
            if first is None:
                first = last
            send("bench.latency", args=(key, time.time()))
        deadline = time.monotonic() + 60
        while self.redis.llen(key) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        values = sorted(float(v) * 1000.0 for v in self.redis.lrange(key, 0, -1))
        self.redis.delete(key)
        span = last - first
        return {
            "rate": rate,
            "seconds": seconds,
            "sent": n,
            "started": len(values),
            "offered_per_s": (n - 1) / span if n > 1 and span > 0 else float(n),
            "p50_ms": quantile(values, 0.50),
            "p99_ms": quantile(values, 0.99),
            "max_ms": values[-1] if values else 0.0,
            "mean_ms": sum(values) / len(values) if values else 0.0,
        }

    def drain(self, key, n):
        """Time from the first increment seen to the counter reaching n."""
        rss_peak = pss_peak = procs = 0
        deadline = time.monotonic() + 600
        t_first = c_first = None
        polls = 0
        while True:
            c = int(self.redis.get(key) or 0)
            now = time.perf_counter()
            if t_first is None and c > 0:
                t_first, c_first = now, c
            if c >= n:
                break
            if self.worker.poll() is not None:
                raise RuntimeError(f"celery worker exited; see {self.logdir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"drain stalled at {c}/{n}; see {self.logdir}")
            if polls % 5 == 0:
                rss, pss, k = rss_tree_kb(self.worker.pid)
                if rss > rss_peak:
                    rss_peak, procs = rss, k
                pss_peak = max(pss_peak, pss)
            polls += 1
            time.sleep(0.005)
        elapsed = now - t_first if t_first is not None else 0.0
        rate = (n - c_first) / elapsed if elapsed > 0 else float("nan")
        return rate, rss_peak, pss_peak, procs

    def run_pool(self, pool, concurrency):
        a = self.args
        out = {"pool": pool, "concurrency": concurrency, "prefetch_multiplier": a.prefetch}
        warm = f"{self.tag}:warm:{pool}"
        # 1. Idle.
        self.start_worker(pool, concurrency, f"{pool}-1")
        self.tasks.incr.apply_async(args=(warm,))
        self.wait_counter(warm, 1)
        time.sleep(2)
        rss, pss, procs = rss_tree_kb(self.worker.pid)
        out.update(idle_rss_mb=rss / 1024, idle_pss_mb=pss / 1024, processes=procs)
        # 2. Latency.
        out["latency"] = [
            self.latency(rate, a.seconds, f"{pool}-{rate}") for rate in a.rates
        ]
        self.stop_worker()
        # 3. A backlog of N, with no consumer.
        key = f"{self.tag}:incr:{pool}"
        self.enqueue(key, a.tasks, confirm=False)
        # 4. Drain (and RSS under load).
        self.start_worker(pool, concurrency, f"{pool}-2")
        rate, rss_peak, pss_peak, procs = self.drain(key, a.tasks)
        out.update(
            drain_per_s=rate,
            load_rss_peak_mb=rss_peak / 1024,
            load_pss_peak_mb=pss_peak / 1024,
        )
        self.stop_worker()
        return out

    def enqueue_rates(self):
        """Enqueue rates with and without confirms (no worker; purged after)."""
        key = f"{self.tag}:enqueue"
        out = {}
        for confirm, name in ((True, "enqueue_confirmed_per_s"), (False, "enqueue_unconfirmed_per_s")):
            # Declares the queue before timing.
            self.purge()
            out[name] = self.enqueue(key, self.args.tasks, confirm)
            self.purge()
        return out

    def cleanup(self):
        self.stop_worker()
        try:
            with self.tasks.app.connection_for_write() as conn:
                ch = conn.channel()
                ch.queue_delete(self.queue)
                ch.exchange_delete(self.queue)
        except Exception as e:  # best effort
            print(f"cleanup (broker): {e}", file=sys.stderr)
        try:
            keys = list(self.redis.scan_iter(match=f"{self.tag}:*", count=1000))
            if keys:
                self.redis.delete(*keys)
        except Exception as e:
            print(f"cleanup (redis): {e}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--pools", default="prefork,threads")
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                    help="prefork pool processes (default: cores)")
    ap.add_argument("--threads", type=int, default=8, help="threads pool size")
    ap.add_argument("--prefetch", type=int, default=64,
                    help="worker_prefetch_multiplier")
    ap.add_argument("--rates", default="100,1000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.rates = [int(r) for r in args.rates.split(",") if r]

    import celery

    # SIGTERM (bench/run interrupted) still cleans up, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    b = Bench(args)
    report = {"celery_version": celery.__version__, "tasks": args.tasks, "pools": {}}
    try:
        if not args.json:
            print("celery enqueue ...", file=sys.stderr)
        report.update(b.enqueue_rates())
        for pool in [p for p in args.pools.split(",") if p]:
            conc = args.processes if pool == "prefork" else args.threads
            if not args.json:
                print(f"celery {pool} -c {conc} ...", file=sys.stderr)
            report["pools"][pool] = b.run_pool(pool, conc)
    finally:
        b.cleanup()
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"celery {report['celery_version']}: {args.tasks} tasks (bench.incr); enqueue "
        f"{report['enqueue_confirmed_per_s']:.0f}/s with confirms, "
        f"{report['enqueue_unconfirmed_per_s']:.0f}/s without"
    )
    for pool, r in report["pools"].items():
        print(
            f"  {pool:8} -c {r['concurrency']}: drain {r['drain_per_s']:.0f}/s, RSS idle {r['idle_rss_mb']:.1f} MB, "
            f"under load {r['load_rss_peak_mb']:.1f} MB ({r['processes']} processes)"
        )
        for lat in r["latency"]:
            print(
                f"    latency at {lat['rate']}/s (achieved {lat['offered_per_s']:.0f}/s): "
                f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms"
            )


if __name__ == "__main__":
    main()
