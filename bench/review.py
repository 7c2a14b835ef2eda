#!/usr/bin/env python3
"""grove review benchmark: `grove review --json` over 50 envs x 2 layers, against the same
information gathered by git queries run one after another in a shell loop, in the same run.

    python3 bench/review.py [--envs N] [--files N] [--runs N] [--grove PATH] [--keep DIR]

Two shell loops, both replayed sequentially by `sh`:
- the per-layer loop a script would run: for each layer `rev-parse` of branch and base,
  `rev-list --left-right --count`, `diff --numstat`, `status --porcelain=v2`, `log -1`,
  `merge-tree` against the base tip; and `merge-tree` for each pair of envs that changed a same
  file (grove's own overlap list). This is the target's baseline.
- the exact queries grove ran (from its GROVE_LOG=debug trace): the same git work as grove, so
  the ratio is grove's parallelism and overhead alone.
Writes bench/out/review.json.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, cwd, env, check=True):
    return subprocess.run(cmd, cwd=cwd, env=env, check=check, capture_output=True, text=True)


def git(args, cwd, env):
    return run(["git", *args], cwd, env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", type=int, default=50)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--grove")
    ap.add_argument("--keep", help="build the workspace here (or reuse it) and keep it")
    args = ap.parse_args()
    grove = args.grove and str(Path(args.grove).resolve())
    if not grove:
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
        grove = str(ROOT / "target/release/grove")
    tmp = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="grove-bench-review-")).resolve()
    reuse = args.keep and (tmp / "ws/grove.toml").exists()
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp), "GROVE_HOME": str(tmp / "state"),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b", "LC_ALL": "C",
    }
    try:
        ws = tmp / "ws"
        for repo in [] if reuse else ["front", "api"]:
            d = ws / repo
            d.mkdir(parents=True)
            git(["init", "-q", "-b", "main"], d, env)
            for i in range(args.files):
                sub = d / f"src/m{i // 100:03d}"
                sub.mkdir(parents=True, exist_ok=True)
                (sub / f"f{i:05d}.txt").write_text("".join(f"line {k} of {i}\n" for k in range(20)))
            git(["add", "-A"], d, env)
            git(["commit", "-qm", "synthetic"], d, env)
        (ws / "grove.toml").write_text(
            '[workspace]\ndefault_layers = ["front"]\n'
            '[layers.front]\nrepo = "front"\nports = "36001-36199"\n'
            '[layers.api]\nrepo = "api"\nports = "36201-36399"\nshared_url = "http://localhost:36000"\n'
        )
        if not reuse:
            print(f"making {args.envs} envs x 2 layers over repos of {args.files} files...", flush=True)
        for n in [] if reuse else range(args.envs):
            name = f"e{n:02d}"
            run([grove, "create", name, "--no-start", "--from-api=main"], ws, env)
            for layer in ["front", "api"]:
                wt = ws / ".grove/envs" / name / layer
                # Each env edits a file of its own and one it shares with its neighbour.
                for f in [f"src/m{n % 20:03d}/f{(n % 20) * 100:05d}.txt", f"src/m{n:03d}/f{n * 100 + 1:05d}.txt"]:
                    p = wt / f
                    if p.exists():
                        p.write_text(p.read_text().replace("line 3 ", f"env {n} line 3 "))
                git(["commit", "-qam", f"{name} work"], wt, env)
        # The base moves on, so every branch is also checked against its tip.
        for repo in [] if reuse else ["front", "api"]:
            d = ws / repo
            (d / "NEWS").write_text("main moved\n")
            git(["add", "-A"], d, env)
            git(["commit", "-qm", "main moves"], d, env)

        traced = run([grove, "review", "--json"], ws, {**env, "GROVE_LOG": "debug"})
        review = json.loads(traced.stdout)
        q = shlex.quote
        loop = []
        for e in review["envs"]:
            for l in e["layers"]:
                repo = ws / l["layer"]
                wt = ws / ".grove/envs" / e["name"] / l["layer"]
                b, base = q(l["branch"]), q(l["base"])
                g = f"git -C {q(str(repo))}"
                loop += [f"{g} rev-parse {b}", f"{g} rev-parse {base}",
                         f"{g} rev-list --left-right --count {base}...{b}", f"{g} diff --numstat {base}...{b}",
                         f"git -C {q(str(wt))} status --porcelain=v2 -uall", f"{g} log -1 --format=%ct%x00%s {b}",
                         f"{g} merge-tree --write-tree --name-only {base} {b}"]
        for c in review["conflicts"]:
            g = f"git -C {q(str(ws / c['layer']))}"
            loop.append(f"{g} merge-tree --write-tree --name-only {q(c['envs'][0])} {q(c['envs'][1])}")
        natural = tmp / "loop.sh"
        natural.write_text("".join(f"{c} >/dev/null 2>&1\n" for c in loop))
        cmds = [m.group(1) for m in re.finditer(r"^\[grove\] \$ (git .*?) \(exit \d+, [\d.]+ ms\)$", traced.stderr, re.M)]
        script = tmp / "replay.sh"
        # The trace joins arguments with spaces (none of these holds one): quote each for sh.
        script.write_text("".join(" ".join(shlex.quote(a) for a in c.split(" ")) + " >/dev/null 2>&1\n" for c in cmds))
        grove_t, shell_t, loop_t = [], [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            run([grove, "review", "--json"], ws, env)
            grove_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            run(["sh", str(script)], ws, env, check=False)
            shell_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            run(["sh", str(natural)], ws, env, check=False)
            loop_t.append(time.perf_counter() - t)
        g, s, lp = (statistics.median(x) * 1000 for x in (grove_t, shell_t, loop_t))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    result = {"envs": args.envs, "files": args.files, "runs": args.runs,
              "grove_review_ms": round(g, 1),
              "per_layer_loop_queries": len(loop), "per_layer_loop_ms": round(lp, 1), "ratio": round(g / lp, 3),
              "grove_queries": len(cmds), "grove_queries_sequential_ms": round(s, 1),
              "ratio_same_queries": round(g / s, 3)}
    print(f"review of {args.envs} envs x 2 layers, median of {args.runs}:")
    print(f"  per-layer shell loop ({len(loop)} git queries)      {lp:8.1f} ms")
    print(f"  grove's own {len(cmds)} git queries, sequential     {s:8.1f} ms")
    print(f"  grove review --json                         {g:8.1f} ms")
    print(f"  ratio to the per-layer loop {g / lp:.2f} (target <= 0.5); to its own queries run sequentially {g / s:.2f}")
    out = ROOT / "bench/out"
    out.mkdir(exist_ok=True)
    (out / "review.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
