#!/usr/bin/env python3
"""grove core benchmark: `grove create --no-start` against `git worktree add -b`, `grove
destroy` against `git worktree remove` + `git branch -d`, and `grove ps` with 50 envs against
`git worktree list`, measured in the same run.

    python3 bench/core.py [--runs N] [--files N] [--grove PATH]

Builds grove in release mode unless --grove is given. Everything happens in a temp folder with
its own HOME, GROVE_HOME and git config; nothing outside it is touched. Prints a table and
writes bench/out/core.json.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, cwd=None, env=None):
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def timed(cmd, cwd, env):
    t = time.perf_counter()
    run(cmd, cwd=cwd, env=env)
    return time.perf_counter() - t


def make_env(tmp):
    home = tmp / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Bench\n\temail = bench@grove.invalid\n[init]\n\tdefaultBranch = main\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GROVE_HOME": str(tmp / "state"),
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    }
    return env


def synthetic_repo(path, files, env):
    path.mkdir(parents=True)
    run(["git", "init", "--quiet", "-b", "main"], cwd=path, env=env)
    per_dir = 100
    for i in range(files):
        d = path / f"src/mod{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        (d / f"file{i:05d}.txt").write_text(f"line one of file {i}\nline two\n" * 3)
    run(["git", "add", "--all"], cwd=path, env=env)
    run(["git", "commit", "--quiet", "-m", "synthetic"], cwd=path, env=env)


def median_ms(xs):
    return statistics.median(xs) * 1000


def bench_create(grove, tmp, env, files, runs):
    ws = tmp / "create-ws"
    synthetic_repo(ws / "app", files, env)
    (ws / "grove.toml").write_text('[layers.app]\nrepo = "app"\nports = "39001-39999"\n')
    raw_dir = tmp / "raw-worktrees"
    git_t, grove_t, git_rm_t, grove_rm_t = [], [], [], []
    # Warm the page cache and grove's store once, untimed.
    run([grove, "create", "warm", "--no-start"], cwd=ws, env=env)
    run([grove, "destroy", "warm", "--yes"], cwd=ws, env=env)
    for i in range(runs):
        # Interleaved, so both see the same machine state.
        wt = raw_dir / f"g{i}"
        git_t.append(timed(["git", "-C", str(ws / "app"), "worktree", "add", "--quiet", "-b", f"g{i}", str(wt), "main"], ws, env))
        grove_t.append(timed([grove, "create", f"c{i}", "--no-start"], ws, env))
        # Removing: what a careful script does (remove refuses over changes, `-d` over
        # unmerged commits) against destroy, which also checks hidden edits, commits only the
        # worktree's HEAD holds, and sweeps the process table for the env's token.
        git_rm_t.append(timed(["sh", "-c", 'git -C "$1" worktree remove "$2" && git -C "$1" branch -d "$3"',
                               "rm", str(ws / "app"), str(wt), f"g{i}"], ws, env))
        grove_rm_t.append(timed([grove, "destroy", f"c{i}", "--yes"], ws, env))
    return median_ms(git_t), median_ms(grove_t), median_ms(git_rm_t), median_ms(grove_rm_t)


def bench_ps(grove, tmp, env, envs, runs):
    ws = tmp / "ps-ws"
    for repo in ["front", "api"]:
        synthetic_repo(ws / repo, 10, env)
    (ws / "grove.toml").write_text(
        '[workspace]\ndefault_layers = ["front"]\n'
        '[layers.front]\nrepo = "front"\nports = "38001-38199"\nrun = "true"\nenv.API_URL = "{{ layers.api.url }}"\n'
        '[layers.api]\nrepo = "api"\nports = "38201-38399"\nshared_url = "http://localhost:38000"\n'
    )
    for i in range(envs):
        run([grove, "create", f"e{i:02d}", "--no-start", "--from-api=main"], cwd=ws, env=env)
    git_t, ps_t, json_t = [], [], []
    for _ in range(runs):
        git_t.append(timed(["git", "-C", str(ws / "front"), "worktree", "list", "--porcelain"], ws, env))
        ps_t.append(timed([grove, "ps"], ws, env))
        json_t.append(timed([grove, "ps", "--json"], ws, env))
    return median_ms(git_t), median_ms(ps_t), median_ms(json_t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--envs", type=int, default=50)
    ap.add_argument("--grove")
    ap.add_argument("--ps-only", action="store_true", help="skip the (slow) create benchmark")
    args = ap.parse_args()
    grove = args.grove and str(Path(args.grove).resolve())
    if not grove:
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
        grove = str(ROOT / "target/release/grove")
    tmp = Path(tempfile.mkdtemp(prefix="grove-bench-")).resolve()
    try:
        env = make_env(tmp)
        git_c, grove_c, git_rm, grove_rm = (
            (1.0, 1.0, 1.0, 1.0) if args.ps_only else bench_create(grove, tmp, env, args.files, args.runs)
        )
        git_l, ps, ps_json = bench_ps(grove, tmp, env, args.envs, args.runs * 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "files": args.files,
        "runs": args.runs,
        "envs": args.envs,
        "git_worktree_add_ms": round(git_c, 1),
        "grove_create_ms": round(grove_c, 1),
        "create_ratio": round(grove_c / git_c, 3),
        "git_worktree_remove_ms": round(git_rm, 1),
        "grove_destroy_ms": round(grove_rm, 1),
        "destroy_ratio": round(grove_rm / git_rm, 3),
        "git_worktree_list_ms": round(git_l, 1),
        "grove_ps_ms": round(ps, 1),
        "grove_ps_json_ms": round(ps_json, 1),
        "ps_ratio": round(ps / git_l, 2),
    }
    print(f"create, repo of {args.files} files, median of {args.runs}:")
    print(f"  git worktree add -b      {git_c:8.1f} ms")
    print(f"  grove create --no-start  {grove_c:8.1f} ms   ratio {grove_c / git_c:.3f}  (target <= 1.15)")
    print(f"  git worktree remove + branch -d {git_rm:8.1f} ms")
    print(f"  grove destroy            {grove_rm:8.1f} ms   ratio {grove_rm / git_rm:.3f}")
    print(f"ps, {args.envs} envs x 2 layers, median of {args.runs * 2}:")
    print(f"  git worktree list        {git_l:8.1f} ms")
    print(f"  grove ps                 {ps:8.1f} ms   ratio {ps / git_l:.2f}  (target <= 30 ms)")
    print(f"  grove ps --json          {ps_json:8.1f} ms")
    out = ROOT / "bench/out"
    out.mkdir(exist_ok=True)
    (out / "core.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
