#!/usr/bin/env python3
"""grove supervision benchmark: the supervisor's idle memory and CPU, and how soon grove reports
a server ready once it listens.

    python3 bench/supervisor.py [--runs N] [--idle SECONDS] [--grove PATH]

Builds grove in release mode unless --grove is given. Runs in a temp folder with its own HOME
and GROVE_HOME, one env whose server is tests/fixtures/server.py (a python3 HTTP server that logs
the moment it listens). Writes bench/out/supervisor.json.

- ready delay: the server waits a random 0.2-0.7 s, then listens, silently (it writes the time
  to a file, not to its output, which would prompt an immediate probe); grove records when its
  probe saw it ready (`ready_since` in `ps --json`). Measured over N restarts.
- idle: after the server is ready, the supervisor's and the guard's CPU time over --idle seconds
  (from /proc/PID/stat) and their memory (VmRSS, and Pss/private from smaps_rollup: file pages
  of the grove binary are shared by every grove process).
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def run(cmd, cwd, env, check=True):
    return subprocess.run(cmd, cwd=cwd, env=env, check=check, capture_output=True, text=True)


def cpu_ms(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICKS


def memory_kb(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    get = lambda text, key: int(re.search(rf"^{key}:\s+(\d+)", text, re.M).group(1))
    return {
        "rss_kb": get(status, "VmRSS"),
        "pss_kb": get(rollup, "Pss"),
        "private_kb": get(rollup, "Private_Clean") + get(rollup, "Private_Dirty"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--idle", type=int, default=60)
    ap.add_argument("--grove")
    args = ap.parse_args()
    grove = args.grove and str(Path(args.grove).resolve())
    if not grove:
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
        grove = str(ROOT / "target/release/grove")
    tmp = Path(tempfile.mkdtemp(prefix="grove-bench-sup-")).resolve()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "GROVE_HOME": str(tmp / "state"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b",
    }
    ws = tmp / "ws"
    (ws / "app").mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main"], ws / "app", env)
    run(["git", "commit", "-q", "--allow-empty", "-m", "i"], ws / "app", env)
    delay_file = tmp / "delay"
    listen_file = tmp / "listened"
    (ws / "grove.toml").write_text(
        f"""[layers.app]
repo = "app"
run = "READY_DELAY=$(cat {delay_file}) exec python3 -u {ROOT / 'tests/fixtures/server.py'}"
env.LISTEN_FILE = "{listen_file}"
ports = "37001-37099"
ready = {{ http = "/health" }}
stop_timeout = 2
"""
    )
    delays = []
    try:
        delay_file.write_text("0.3")
        run([grove, "create", "bench"], ws, env)
        for _ in range(args.runs):
            delay_file.write_text(f"{random.uniform(0.2, 0.7):.3f}")
            run([grove, "restart", "bench", "app"], ws, env)
            listened = float(listen_file.read_text().split()[-1])
            ps = json.loads(run([grove, "ps", "--json"], ws, env).stdout)
            ready_ms = ps["envs"][0]["layers"][0]["ready_since"]
            delays.append(ready_ms - listened * 1000)
        ps = json.loads(run([grove, "ps", "--json"], ws, env).stdout)
        sup = ps["envs"][0]["supervisor"]
        guard = ps["envs"][0]["layers"][0]["pid"]
        time.sleep(1)
        c0 = (cpu_ms(sup), cpu_ms(guard))
        time.sleep(args.idle)
        c1 = (cpu_ms(sup), cpu_ms(guard))
        mem_sup, mem_guard = memory_kb(sup), memory_kb(guard)
        run([grove, "destroy", "bench", "--yes"], ws, env)
    finally:
        run([grove, "--workspace", str(ws), "down", "bench"], ws, env, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "runs": args.runs,
        "ready_delay_ms_median": round(statistics.median(delays), 1),
        "ready_delay_ms_max": round(max(delays), 1),
        "idle_seconds": args.idle,
        "supervisor_cpu_ms": round(c1[0] - c0[0], 1),
        "guard_cpu_ms": round(c1[1] - c0[1], 1),
        "supervisor_memory": mem_sup,
        "guard_memory": mem_guard,
    }
    print(f"ready delay (server listening -> grove reports ready), {args.runs} restarts:")
    print(f"  median {result['ready_delay_ms_median']:.0f} ms, max {result['ready_delay_ms_max']:.0f} ms   (target: median <= 250 ms)")
    print(f"idle for {args.idle} s with one ready server:")
    print(f"  supervisor CPU {result['supervisor_cpu_ms']:.0f} ms, guard CPU {result['guard_cpu_ms']:.0f} ms   (target ~ 0)")
    for name, m in [("supervisor", mem_sup), ("guard", mem_guard)]:
        print(f"  {name:<10} RSS {m['rss_kb'] / 1024:.1f} MB, PSS {m['pss_kb'] / 1024:.1f} MB, private {m['private_kb'] / 1024:.1f} MB")
    print("  (target: supervisor RSS <= 5 MB)")
    out = ROOT / "bench/out"
    out.mkdir(exist_ok=True)
    (out / "supervisor.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
