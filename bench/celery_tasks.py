"""The Celery side of bench/run: the app and its two tasks.

The task bodies match alertflow's: `bench.incr` increments one Redis key (as
alertflow's `bench-incr`), and `bench.latency` records when it started minus
the send time carried in its arguments (as `alertflow bench latency`), here
into a Redis list.

Settings mirror alertflow's guarantees: late acks, persistent messages,
publisher confirms (`confirm_publish`, on `app`), durable queue; `fast_app`
publishes the same tasks without confirms (Celery's default). Results are ignored
(alertflow does record task states in Redis, so this favours Celery).
Everything is configured from the environment by celery_bench.py:

  CELERYBENCH_QUEUE       queue (and exchange) name, required
  CELERYBENCH_BROKER_URL  AMQP URL (default amqp://guest:guest@127.0.0.1:5672//)
  CELERYBENCH_REDIS_URL   Redis URL (default redis://127.0.0.1:6379/0)
  CELERYBENCH_PREFETCH    worker_prefetch_multiplier (default 64)
"""

import os
import time

import redis
from celery import Celery
from kombu import Exchange, Queue

BROKER_URL = os.environ.get(
    "CELERYBENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"
)
REDIS_URL = os.environ.get("CELERYBENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("CELERYBENCH_QUEUE", "celerybench")
PREFETCH = int(os.environ.get("CELERYBENCH_PREFETCH", "64"))


def make_app(confirm):
    """The app; `confirm` waits for a publisher confirm on every publish."""
    a = Celery("celerybench", broker=BROKER_URL)
    a.conf.update(
        task_acks_late=True,
        task_default_delivery_mode="persistent",
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_queues=[
            Queue(
                QUEUE,
                Exchange(QUEUE, type="direct", durable=True),
                routing_key=QUEUE,
                durable=True,
            )
        ],
        task_default_queue=QUEUE,
        task_default_exchange=QUEUE,
        task_default_routing_key=QUEUE,
        worker_prefetch_multiplier=PREFETCH,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        broker_transport_options={"confirm_publish": confirm},
        broker_connection_retry_on_startup=True,
    )
    return a


# The worker's app, and the publisher's with confirms (as alertflow publishes).
app = make_app(confirm=True)
# Celery's default: publish without waiting for a confirm.
fast_app = make_app(confirm=False)

_client = None
_client_pid = None


def client():
    """One Redis client per process (prefork children get their own)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(REDIS_URL)
        _client_pid = os.getpid()
    return _client


@app.task(name="bench.incr")
def incr(key):
    client().incr(key)


@app.task(name="bench.latency")
def latency(key, sent):
    waited = time.time() - sent
    client().rpush(key, repr(waited))
