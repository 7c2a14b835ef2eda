#!/usr/bin/env python3
"""grove land benchmark: `grove land` of a two-repo env (merge commits, the main checkouts
updated, worktrees and branches removed) against what a careful script does with raw git in
the same run: `git merge --no-ff` in each main checkout, then `git worktree remove` and
`git branch -d`. Also `grove prune --dry-run` over 20 envs (half of them squash-merged)
against `git branch --merged` in both repos, which finds only the merged ones.

    python3 bench/land.py [--runs N] [--files N] [--grove PATH]

Builds grove in release mode unless --grove is given. Everything happens in a temp folder with
its own HOME, GROVE_HOME and git config. Prints a table and writes bench/out/land.json.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core import ROOT, make_env, median_ms, run, synthetic_repo, timed  # noqa: E402

REPOS = ["front", "api"]


def commit(path, name, text, env):
    (path / name).write_text(text)
    run(["git", "add", "--all"], cwd=path, env=env)
    run(["git", "commit", "--quiet", "-m", f"Change {name}"], cwd=path, env=env)


def two_repo_ws(ws, files, env):
    """A workspace of two synthetic repos, both layers dedicated in every env."""
    for repo in REPOS:
        synthetic_repo(ws / repo, files, env)
    (ws / "grove.toml").write_text(
        '[workspace]\ndefault_layers = ["front", "api"]\n'
        '[layers.front]\nrepo = "front"\n[layers.api]\nrepo = "api"\n'
    )
    return ws


def bench_land(grove, tmp, env, files, runs):
    ws = two_repo_ws(tmp / "land-ws", files, env)
    raw_dir = tmp / "raw-worktrees"
    raw_t, grove_t = [], []
    for i in range(runs):
        # Set up, untimed: an env (grove's, and the script's worktrees) with a commit in each
        # repo, and each main moved on since, so that both make real merge commits.
        run([grove, "create", f"c{i}", "--no-start"], cwd=ws, env=env)
        for repo in REPOS:
            wt = raw_dir / f"{repo}-g{i}"
            run(["git", "-C", str(ws / repo), "worktree", "add", "--quiet", "-b", f"g{i}", str(wt), "main"], env=env)
            commit(wt, f"raw{i}.txt", "raw\n", env)
            commit(ws / ".grove/envs" / f"c{i}" / repo, f"grove{i}.txt", "grove\n", env)
            commit(ws / repo, f"main{i}.txt", "main\n", env)
        script = (
            'for r in front api; do '
            'git -C "$0/$r" merge --quiet --no-ff -m "Merge $1" "$1" && '
            'git -C "$0/$r" worktree remove "$2/$r-$1" && '
            'git -C "$0/$r" branch -d --quiet "$1" || exit 1; done'
        )
        raw_t.append(timed(["sh", "-c", script, str(ws), f"g{i}", str(raw_dir)], ws, env))
        grove_t.append(timed([grove, "land", f"c{i}", "--yes"], ws, env))
    return median_ms(raw_t), median_ms(grove_t)


def bench_prune(grove, tmp, env, files, runs, envs=20):
    ws = two_repo_ws(tmp / "prune-ws", files, env)
    for i in range(envs):
        run([grove, "create", f"e{i:02d}", "--no-start"], cwd=ws, env=env)
        for repo in REPOS:
            commit(ws / ".grove/envs" / f"e{i:02d}" / repo, f"e{i}.txt", "x\n", env)
            if i % 2 == 0:
                run(["git", "merge", "--quiet", "--squash", f"e{i:02d}"], cwd=ws / repo, env=env)
                run(["git", "commit", "--quiet", "-m", f"Squash e{i}"], cwd=ws / repo, env=env)
    raw_t, grove_t = [], []
    script = 'for r in front api; do git -C "$0/$r" branch --merged main >/dev/null || exit 1; done'
    for _ in range(runs):
        raw_t.append(timed(["sh", "-c", script, str(ws)], ws, env))
        grove_t.append(timed([grove, "prune", "--dry-run"], ws, env))
    return median_ms(raw_t), median_ms(grove_t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--grove")
    args = ap.parse_args()
    grove = args.grove and str(Path(args.grove).resolve())
    if not grove:
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
        grove = str(ROOT / "target/release/grove")
    tmp = Path(tempfile.mkdtemp(prefix="grove-bench-")).resolve()
    try:
        env = make_env(tmp)
        raw_land, grove_land = bench_land(grove, tmp, env, args.files, args.runs)
        raw_prune, grove_prune = bench_prune(grove, tmp, env, args.files, args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "files": args.files,
        "runs": args.runs,
        "raw_merge_remove_ms": round(raw_land, 1),
        "grove_land_ms": round(grove_land, 1),
        "land_ratio": round(grove_land / raw_land, 3),
        "git_branch_merged_ms": round(raw_prune, 1),
        "grove_prune_dry_run_ms": round(grove_prune, 1),
    }
    print(f"land, two repos of {args.files} files, median of {args.runs}:")
    print(f"  git merge --no-ff + worktree remove + branch -d, per repo  {raw_land:8.1f} ms")
    print(f"  grove land                                                {grove_land:8.1f} ms   ratio {grove_land / raw_land:.3f}")
    print(f"prune, 20 envs x 2 repos (10 squash-merged), median of {args.runs}:")
    print(f"  git branch --merged, per repo (finds none of them)        {raw_prune:8.1f} ms")
    print(f"  grove prune --dry-run (finds all 10)                      {grove_prune:8.1f} ms")
    out = ROOT / "bench/out"
    out.mkdir(exist_ok=True)
    (out / "land.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
