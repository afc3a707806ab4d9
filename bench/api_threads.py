"""Requests of threads sharing one GIL, as one gunicorn worker's threads do (issue 16).

In one process, ``--threads`` threads each make ``--requests`` GETs of one list through the WSGI
application (bench/api_cpu.py's seeded demo tenant and ``wsgi_get``), and the wall time of each
request is reported (p50, p90, p99, the slowest) with the throughput, at each GIL switch interval
of ``--intervals`` (``sys.setswitchinterval``), alternated for ``--rounds`` rounds. It answers
whether a thread back from a query waits for the GIL long enough to make a tail.

Usage: .venv/bin/python bench/api_threads.py [--endpoint secrets] [--threads 4] [--requests 150]
[--intervals 0.005,0.0005] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import api_cpu  # noqa: E402
from bench.common import print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="secrets", help="a list endpoint of the demo tenant")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--requests", type=int, default=150, help="requests per thread")
    parser.add_argument("--intervals", default="0.005,0.0005", help="GIL switch intervals (seconds)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="api-threads-") as tmp:
        api_cpu.setup_django(f"sqlite:///{tmp}/db.sqlite3", Path(tmp))
        token = api_cpu.seed(5)
        from django.core.wsgi import get_wsgi_application
        from django.db import connections

        application = get_wsgi_application()
        path = f"/api/v1/tenants/demo/{args.endpoint}/"

        def worker(latencies: list[float]) -> None:
            for _ in range(args.requests):
                start = time.perf_counter()
                api_cpu.wsgi_get(application, path, token)
                latencies.append((time.perf_counter() - start) * 1000)
            connections.close_all()

        for _ in range(50):  # warm-up
            api_cpu.wsgi_get(application, path, token)
        for round_ in range(args.rounds):
            for interval in [float(i) for i in args.intervals.split(",")]:
                sys.setswitchinterval(interval)
                latencies: list[float] = []
                threads = [threading.Thread(target=worker, args=(latencies,)) for _ in range(args.threads)]
                began = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                wall = time.perf_counter() - began
                latencies.sort()
                rank = [latencies[int(len(latencies) * q)] for q in (0.5, 0.9, 0.99)]
                rows.append(
                    [str(round_), f"{interval * 1000:g}", f"{len(latencies) / wall:.0f}"]
                    + [f"{ms:.1f}" for ms in [*rank, latencies[-1]]]
                )
        connections.close_all()
    print_table(["round", "switch ms", "req/s", "p50 ms", "p90 ms", "p99 ms", "slowest ms"], rows)


if __name__ == "__main__":
    main()
