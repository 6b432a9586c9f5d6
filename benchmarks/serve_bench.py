"""kbqa over HTTP: latency, throughput, worker memory and cold start of `kbqa serve`.

    .venv/bin/python benchmarks/serve_bench.py --index-dir DIR [--workers 2] [--seconds 20]
        [--out benchmarks/results/serve.json]

Starts a real `kbqa serve` (gunicorn) on a free port over an existing index and
drives it with the dev questions: sequential requests for latency (warm),
then 1, 4 and 16 concurrent clients (keep-alive connections, one thread each)
for throughput. Numbers are printed as Markdown and written as JSON; nothing
is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import machine  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * (len(values) - 1)))], 2)


class Client:
    """One keep-alive connection, as a browser or a script would hold it."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def query(self, question: str) -> tuple[int, float, dict | None]:
        body = json.dumps({"question": question}).encode()
        t = time.perf_counter()
        try:
            self.conn.request("POST", "/api/query", body, {"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            data = resp.read()
            ms = (time.perf_counter() - t) * 1000
            return resp.status, ms, json.loads(data) if resp.status == 200 else None
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            return 0, (time.perf_counter() - t) * 1000, None


def start(index_dir: Path, port: int, workers: int) -> tuple[subprocess.Popen, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kbqa.cli", "serve", "--index-dir", str(index_dir),
                             "--port", str(port), "--workers", str(workers)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = Client(port)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"kbqa serve exited: {proc.stderr.read().decode()}")
        status, _, _ = client.query("etcd 是什么？")
        if status == 200:
            return proc, round(time.perf_counter() - t0, 2)
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(x) for x in out.split()]


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def shared_mib(pid: int) -> float:
    """Pages this process shares with others (the index and model loaded before fork)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Shared_Clean:", "Shared_Dirty:")):
                total += int(line.split()[1])
    except OSError:
        return 0.0
    return round(total / 1024, 1)


def latency(port: int, questions: list[str], repeat: int, warm: bool) -> dict:
    """Sequential requests on one keep-alive connection (so one worker).

    warm: every question is asked once untimed first, on this same connection.
    A new connection may land on the other worker, whose caches have not seen
    the questions: before this, a "warm" pass was partly cold (p95 26-29 ms
    against 17-20 ms once both workers had seen each question).
    """
    client = Client(port)
    for q in (questions if warm else questions[:5]):
        client.query(q if warm else f"{q} (connection warm-up)")
    times, stages = [], {}
    for _ in range(repeat):
        for q in questions:
            status, ms, data = client.query(q)
            if status == 200:
                times.append(ms)
                for k, v in data.get("timings", {}).items():
                    stages.setdefault(k, []).append(v)
    return {"n": len(times), "p50_ms": pct(times, 0.5), "p95_ms": pct(times, 0.95),
            "p99_ms": pct(times, 0.99),
            "server_stages_p50_ms": {k: round(statistics.median(v), 3) for k, v in stages.items()}}


def throughput(port: int, questions: list[str], clients: int, seconds: float) -> dict:
    stop = time.perf_counter() + seconds
    lock = threading.Lock()
    times: list[float] = []
    errors = [0]

    def run(k: int) -> None:
        c = Client(port)
        i = k
        local, bad = [], 0
        while time.perf_counter() < stop:
            status, ms, _ = c.query(questions[i % len(questions)])
            i += clients
            if status == 200:
                local.append(ms)
            else:
                bad += 1
        with lock:
            times.extend(local)
            errors[0] += bad

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(times),
            "errors": errors[0], "rps": round(len(times) / elapsed, 1),
            "p50_ms": pct(times, 0.5) if times else None, "p95_ms": pct(times, 0.95) if times else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index-dir", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = ap.parse_args()
    questions = [json.loads(line)["question"] for line in
                 (args.shared / "eval" / "dev.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    port = free_port()
    proc, cold = start(args.index_dir, port, args.workers)
    try:
        result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "workers": args.workers,
                  "index_dir": str(args.index_dir), "cold_start_s": cold}
        # gunicorn forks its workers one after another: wait for all of them.
        deadline = time.perf_counter() + 10
        workers = children(proc.pid)
        while len(workers) < args.workers and time.perf_counter() < deadline:
            time.sleep(0.1)
            workers = children(proc.pid)
        result["rss_after_start_mib"] = {"master": rss_mib(proc.pid),
                                         "workers": [rss_mib(p) for p in workers]}
        # Unique questions first (no query-vector cache), then the same again (cached).
        result["latency_first_pass"] = latency(port, questions, 1, warm=False)
        result["latency_warm"] = latency(port, questions, args.repeat, warm=True)
        result["throughput"] = [throughput(port, questions, n, args.seconds) for n in (1, 4, 16)]
        result["rss_peak_mib"] = {"master": rss_mib(proc.pid, "VmHWM"),
                                  "workers": [rss_mib(p, "VmHWM") for p in workers]}
        result["shared_mib"] = {"workers": [shared_mib(p) for p in workers]}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    print(f"## kbqa serve ({args.workers} workers) on {result['machine']['cpu']}, "
          f"{result['machine']['cores']} cores — cold start {cold} s\n")
    print("| HTTP /api/query | n | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|")
    for k in ("latency_first_pass", "latency_warm"):
        v = result[k]
        print(f"| {k} | {v['n']} | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} |")
    print("\n| concurrent clients | requests/s | errors | p50 ms | p95 ms |\n|---|---|---|---|---|")
    for t in result["throughput"]:
        print(f"| {t['clients']} | {t['rps']} | {t['errors']} | {t['p50_ms']} | {t['p95_ms']} |")
    print(f"\nRSS MiB after start {result['rss_after_start_mib']}, peak {result['rss_peak_mib']}, "
          f"shared {result['shared_mib']}")
    print(f"server stage p50 (ms): {result['latency_warm']['server_stages_p50_ms']}")
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
