#!/usr/bin/env python3
"""grove review benchmark: `grove review --json` over 50 envs x 2 layers, cold and warm, against
the same information gathered by git queries run one after another in a shell loop, and against
worktrunk's `wt list` over the same worktrees when `wt` is on PATH (or given with --wt), all in
the same run, interleaved.

    python3 bench/review.py [--envs N] [--files N] [--runs N] [--grove PATH] [--baseline PATH]
                            [--wt PATH] [--keep DIR]

Every env's layers have one commit of their own, and both bases moved on after the envs were
made, so each layer gets its counts, diffstat, status and merge prediction, and the radar its
pairs.

- cold: the first review after its cache is dropped (`$GROVE_HOME/cache/review-*.json` deleted,
  nothing else): every git query runs, as on a first review or after every branch moved. The
  page cache and git's own files (indexes refreshed by earlier statuses) are as warm as for
  the other runs: cold is about grove's cache only.
- warm: the next review with nothing changed. With 100 worktrees the first review starts the
  workspace's review watcher (inotify, see src/watch.rs), which the bench waits for: a warm
  review then runs `git status` only where something changed, here nowhere.
- warm without the watcher (GROVE_REVIEW_WATCH=never): what is left is `git status` per
  worktree, with git's untracked cache.
- first: a cold review of worktrees whose indexes do not carry git's untracked cache
  (`git update-index --no-untracked-cache` in each, untimed), as worktrees made by a grove
  before 2026-11-24 may not: review reads the cache but never writes an index
  (GIT_OPTIONAL_LOCKS=0), so this lasts until a git command in the worktree writes one.
- the per-layer loop a script would run, replayed sequentially by `sh`: for each layer
  `rev-parse` of branch and base, `rev-list --left-right --count`, `diff --numstat`,
  `status --porcelain=v2`, `log -1`, `merge-tree` against the base tip; and `merge-tree` for
  each pair of envs that changed a same file (grove's own overlap list). This is the target's
  baseline.
- the exact queries a cold grove ran (from its GROVE_LOG=debug trace), replayed sequentially:
  the same git work as grove, so the ratio is grove's parallelism and overhead alone.
- with --baseline, another grove binary (an older build), cold and warm the same way, in the
  same runs: before/after numbers that share the machine's moods.
- `wt list` in each repo's main checkout (front, then api), summed: worktrunk's listing of the
  same 100 worktrees. Skipped when there is no `wt`.

Medians of --runs; each series' min and max are kept too (the machine may be shared: look at
the spread before quoting a median). Writes bench/out/review.json.
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
    ap.add_argument("--baseline", help="another grove binary, measured the same way in the same runs")
    ap.add_argument("--wt", help="worktrunk's `wt` (default: the one on PATH, if any)")
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

        cache = tmp / "state/cache"

        def drop_cache():
            for f in cache.glob("review-*.json"):
                f.unlink()

        drop_cache()
        traced = run([grove, "review", "--json"], ws, {**env, "GROVE_LOG": "debug"})
        warm_trace = run([grove, "review", "--json"], ws, {**env, "GROVE_LOG": "debug"})
        if json.loads(warm_trace.stdout) != json.loads(traced.stdout):
            sys.exit("a warm review differs from the cold one")
        # The first review started the watcher: wait until a review no longer needs `git status`.
        deadline = time.time() + 120
        while time.time() < deadline:
            t = run([grove, "review", "--json"], ws, {**env, "GROVE_LOG": "debug"})
            if not re.search(r"^\[grove\] \$ git .* status ", t.stderr, re.M):
                break
            time.sleep(0.5)
        else:
            sys.exit("the review watcher never answered")
        watcher_rss_kb = None
        for pid in os.listdir("/proc"):
            try:
                if pid.isdigit() and b"__watch" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            watcher_rss_kb = int(line.split()[1])
            except OSError:
                pass
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
        # The git a warm review runs once the watcher answers (`t`, the last wait above).
        warm_cmds = re.findall(r"^\[grove\] \$ git ", t.stderr, re.M)
        if json.loads(t.stdout) != json.loads(traced.stdout):
            sys.exit("a review with the watcher differs from the cold one")
        wt_bin = args.wt or shutil.which("wt", path=env["PATH"])
        wt_cmd = None
        if wt_bin:
            wt_cmd = [str(Path(wt_bin).resolve()), "list"]
            for repo in ["front", "api"]:
                if run(wt_cmd, ws / repo, env, check=False).returncode != 0:
                    print(f"`wt list` fails in {repo}: not measured", flush=True)
                    wt_cmd = None
        baseline = args.baseline and str(Path(args.baseline).resolve())

        def cold_warm(binary, cold_xs, warm_xs):
            drop_cache()
            t = time.perf_counter()
            run([binary, "review", "--json"], ws, env)
            cold_xs.append(time.perf_counter() - t)
            t = time.perf_counter()
            run([binary, "review", "--json"], ws, env)
            warm_xs.append(time.perf_counter() - t)

        worktrees = sorted(p for p in (ws / ".grove/envs").glob("*/*") if (p / ".git").exists())

        def first(xs):
            for w in worktrees:
                git(["update-index", "--no-untracked-cache"], w, env)
            drop_cache()
            t = time.perf_counter()
            run([grove, "review", "--json"], ws, env)
            xs.append(time.perf_counter() - t)
            # Back as grove leaves a worktree it makes (untimed): the index refreshed, with the
            # untracked cache (a review writes neither).
            for w in worktrees:
                git(["-c", "core.untrackedCache=true", "status", "--porcelain"], w, env)

        first_t, cold_t, grove_t, shell_t, loop_t, wt_t, base_cold_t, base_warm_t, nowatch_t = ([] for _ in range(9))
        for _ in range(args.runs):
            first(first_t)
            cold_warm(grove, cold_t, grove_t)
            t = time.perf_counter()
            run([grove, "review", "--json"], ws, {**env, "GROVE_REVIEW_WATCH": "never"})
            nowatch_t.append(time.perf_counter() - t)
            if baseline:
                cold_warm(baseline, base_cold_t, base_warm_t)
            if wt_cmd:
                t = time.perf_counter()
                for repo in ["front", "api"]:
                    run(wt_cmd, ws / repo, env)
                wt_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            run(["sh", str(script)], ws, env, check=False)
            shell_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            run(["sh", str(natural)], ws, env, check=False)
            loop_t.append(time.perf_counter() - t)
        c, g, s, lp = (statistics.median(x) * 1000 for x in (cold_t, grove_t, shell_t, loop_t))
        w = statistics.median(wt_t) * 1000 if wt_t else None
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    def spread(xs):
        return [round(min(xs) * 1000, 1), round(max(xs) * 1000, 1)]

    result = {"envs": args.envs, "files": args.files, "runs": args.runs,
              "grove_review_first_ms": round(statistics.median(first_t) * 1000, 1),
              "grove_review_first_min_max_ms": spread(first_t),
              "grove_review_cold_ms": round(c, 1), "grove_review_cold_min_max_ms": spread(cold_t),
              "grove_review_warm_ms": round(g, 1), "grove_review_warm_min_max_ms": spread(grove_t),
              "grove_review_warm_without_watcher_ms": round(statistics.median(nowatch_t) * 1000, 1),
              "grove_review_warm_without_watcher_min_max_ms": spread(nowatch_t),
              "watcher_rss_kb": watcher_rss_kb,
              "per_layer_loop_queries": len(loop), "per_layer_loop_ms": round(lp, 1),
              "per_layer_loop_min_max_ms": spread(loop_t),
              "ratio_cold": round(c / lp, 3), "ratio_warm": round(g / lp, 3),
              "grove_queries_cold": len(cmds), "grove_queries_warm": len(warm_cmds),
              "grove_queries_sequential_ms": round(s, 1), "ratio_cold_same_queries": round(c / s, 3),
              "wt_list_ms": w and round(w, 1), "wt_list_min_max_ms": wt_t and spread(wt_t),
              "baseline": baseline or None,
              "baseline_cold_ms": base_cold_t and round(statistics.median(base_cold_t) * 1000, 1),
              "baseline_cold_min_max_ms": base_cold_t and spread(base_cold_t),
              "baseline_warm_ms": base_warm_t and round(statistics.median(base_warm_t) * 1000, 1),
              "baseline_warm_min_max_ms": base_warm_t and spread(base_warm_t),
              "load_average": os.getloadavg()}
    print(f"review of {args.envs} envs x 2 layers over repos of {args.files} files, median of {args.runs} [min-max]:")
    print(f"  per-layer shell loop ({len(loop)} git queries)       {lp:8.1f} ms  {spread(loop_t)}")
    print(f"  grove's cold {len(cmds)} git queries, sequential     {s:8.1f} ms  {spread(shell_t)}")
    print(f"  grove review --json, first                  {statistics.median(first_t) * 1000:8.1f} ms  {spread(first_t)}")
    print(f"  grove review --json, cold ({len(cmds)} queries)      {c:8.1f} ms  {spread(cold_t)}")
    print(f"  grove review --json, warm ({len(warm_cmds)} queries)      {g:8.1f} ms  {spread(grove_t)}")
    print(f"  grove review --json, warm, no watcher          {statistics.median(nowatch_t) * 1000:8.1f} ms  {spread(nowatch_t)}")
    print(f"  review watcher RSS                             {watcher_rss_kb} kB")
    if base_cold_t:
        bc, bw = (statistics.median(x) * 1000 for x in (base_cold_t, base_warm_t))
        print(f"  baseline grove, cold                        {bc:8.1f} ms  {spread(base_cold_t)}")
        print(f"  baseline grove, warm                        {bw:8.1f} ms  {spread(base_warm_t)}")
    if w is not None:
        print(f"  wt list, front + api                        {w:8.1f} ms  {spread(wt_t)}")
    else:
        print("  wt list: no `wt` on PATH, not measured")
    print(f"  ratio to the per-layer loop: cold {c / lp:.2f}, warm {g / lp:.2f} (target <= 0.5); "
          f"cold to its own queries run sequentially {c / s:.2f}")
    out = ROOT / "bench/out"
    out.mkdir(exist_ok=True)
    (out / "review.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
