#!/usr/bin/env python3
"""grove create-to-ready benchmark: how long until an env's Vite dev server answers, and what the
env costs on disk, for a front-end repo with a real npm dependency tree, grove against the same
steps done by hand, measured in the same run.

    python3 bench/create.py [--runs N] [--grove PATH] [--modes hand,copy,hardlink,pool]

Modes (each timed from the start of the command to the first answer of the dev server):

  hand      `git worktree add -b` + `cp -a node_modules` + start Vite (own process group) +
            poll `GET /` until 200; the server is then stopped and the worktree and branch
            removed, untimed.
  copy      `grove create` with `copy = [{ path = "node_modules", mode = "copy" }]`.
  hardlink  the same with `mode = "hardlink"`.
  pool      `mode = "hardlink"` and `pool = 1`; `grove pool fill` runs (untimed) before each
            create, so the create claims a prepared worktree; `grove pool drain` at the end.
  copy-legacy  (not run by default) the plain `copy = ["node_modules"]` entry, the syntax of
            groves before copy modes: reflink-or-copy, like `mode = "copy"`.

`grove create` returns once the server is ready (`ready = { http = "/" }`), so the whole command
is timed; then, untimed, `GET /` on the env's port must answer 200 (as in the hand mode: grove's
probe takes any status below 500), and `grove destroy --yes --force` follows. Before the first
round, one hand run (page cache, Vite's first start) and a `grove create --no-start` without
copies (grove's store) are made, untimed; then modes run interleaved, one of each per round, so
they all see the same machine state. A mode grove rejects is reported with grove's message and
the other modes go on.

Disk per env is what the env adds, measured right after the timed create, while it exists:
`du -s --block-size=1` over the main checkout's node_modules and the env's worktree together
(du counts a hard-linked inode once across its arguments) minus du of node_modules alone. Its
ratio ("vs deps") is to node_modules' own du on disk, not to its apparent size (du -sb).

The fixture is a Vite + React + TypeScript app with a realistic dependency set (ESLint with
typescript-eslint, Vitest, Testing Library, MUI, Prettier...), pinned to exact
versions that install on node 20 (Vite 7, Vitest 3). `npm install` runs once per package.json
content; the installed folder is cached in /tmp/grove-bench-cache (--cache) and copied into a
fresh repo made in a temp folder at each run. Builds grove in release mode unless --grove is
given. grove runs in the temp folder with its own HOME, GROVE_HOME and git config; nothing
outside it is touched but the cache. Prints a table and writes bench/out/create.json.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ["hand", "copy", "hardlink", "pool"]
EXTRA_MODES = ["copy-legacy"]

# `run` is executed with `sh -c` and reads the leased port from $PORT (grove.toml's `run` is not
# a template); the hand mode runs the same command with PORT set.
RUN = 'node_modules/.bin/vite --port "$PORT" --strictPort --host 127.0.0.1'

PACKAGE_JSON = {
    "name": "bench-front",
    "private": True,
    "version": "0.0.0",
    "type": "module",
    "scripts": {
        "dev": "vite",
        "build": "tsc -b && vite build",
        "lint": "eslint .",
        "test": "vitest run",
        "format": "prettier --write src",
    },
    "dependencies": {
        "@emotion/react": "11.14.0",
        "@emotion/styled": "11.14.1",
        "@mui/material": "9.5.0",
        "@sentry/react": "10.78.0",
        "@tanstack/react-query": "5.108.0",
        "axios": "1.21.1",
        "date-fns": "4.4.0",
        "framer-motion": "14.14.0",
        "i18next": "26.7.2",
        "lodash-es": "4.18.1",
        "react": "19.3.1",
        "react-dom": "19.3.1",
        "react-i18next": "17.1.13",
        "react-router-dom": "7.18.5",
        "recharts": "3.10.1",
        "zod": "4.6.7",
    },
    "devDependencies": {
        "@eslint/js": "9.39.5",
        "@faker-js/faker": "10.6.0",
        "@testing-library/jest-dom": "6.9.1",
        "@testing-library/react": "16.3.3",
        "@testing-library/user-event": "14.6.13",
        "@types/lodash-es": "4.17.12",
        "@types/node": "20.19.43",
        "@types/react": "19.3.0",
        "@types/react-dom": "19.3.0",
        "@vitejs/plugin-react": "5.2.0",
        "@vitest/coverage-v8": "3.2.7",
        "eslint": "9.39.5",
        "eslint-plugin-react-hooks": "7.1.1",
        "eslint-plugin-react-refresh": "0.4.26",
        "globals": "16.5.0",
        "jsdom": "26.1.0",
        "msw": "2.15.0",
        "prettier": "3.10.1",
        "typescript": "5.9.3",
        "typescript-eslint": "8.73.0",
        "vite": "7.3.8",
        "vitest": "3.2.7",
    },
}

SOURCES = {
    ".gitignore": "node_modules/\ndist/\ncoverage/\n",
    ".prettierrc": '{ "semi": false, "singleQuote": true }\n',
    "index.html": """<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>bench front</title>
  </head>
  <body>
    <div id="root"></div>
    <script type="module" src="/src/main.tsx"></script>
  </body>
</html>
""",
    "vite.config.ts": """/// <reference types="vitest/config" />
import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

export default defineConfig({
  plugins: [react()],
  test: { environment: 'jsdom', setupFiles: ['./src/setupTests.ts'] },
})
""",
    "tsconfig.json": """{
  "compilerOptions": {
    "target": "ES2022",
    "lib": ["ES2022", "DOM", "DOM.Iterable"],
    "module": "ESNext",
    "moduleResolution": "bundler",
    "jsx": "react-jsx",
    "strict": true,
    "noEmit": true,
    "skipLibCheck": true,
    "types": ["vite/client", "vitest/globals"]
  },
  "include": ["src", "vite.config.ts"]
}
""",
    "eslint.config.js": """import js from '@eslint/js'
import globals from 'globals'
import reactHooks from 'eslint-plugin-react-hooks'
import reactRefresh from 'eslint-plugin-react-refresh'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist'] },
  {
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    files: ['**/*.{ts,tsx}'],
    languageOptions: { ecmaVersion: 2022, globals: globals.browser },
    plugins: { 'react-hooks': reactHooks, 'react-refresh': reactRefresh },
    rules: {
      ...reactHooks.configs.recommended.rules,
      'react-refresh/only-export-components': ['warn', { allowConstantExport: true }],
    },
  },
)
""",
    "src/main.tsx": """import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import { QueryClient, QueryClientProvider } from '@tanstack/react-query'
import { BrowserRouter } from 'react-router-dom'
import App from './App'

const queryClient = new QueryClient()

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <BrowserRouter>
        <App />
      </BrowserRouter>
    </QueryClientProvider>
  </StrictMode>,
)
""",
    "src/App.tsx": """import { useState } from 'react'
import { Button, Container, Typography } from '@mui/material'
import { format } from 'date-fns'

export default function App() {
  const [count, setCount] = useState(0)
  return (
    <Container>
      <Typography variant="h4">bench front</Typography>
      <Typography>{format(new Date(0), 'yyyy-MM-dd')}</Typography>
      <Button variant="contained" onClick={() => setCount((c) => c + 1)}>
        count is {count}
      </Button>
    </Container>
  )
}
""",
    "src/setupTests.ts": "import '@testing-library/jest-dom/vitest'\n",
    "src/App.test.tsx": """import { render, screen } from '@testing-library/react'
import userEvent from '@testing-library/user-event'
import { expect, test } from 'vitest'
import App from './App'

test('counts clicks', async () => {
  render(<App />)
  await userEvent.click(screen.getByRole('button'))
  expect(screen.getByRole('button')).toHaveTextContent('count is 1')
})
""",
}


def run(cmd, cwd=None, env=None):
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise Failed(f"`{' '.join(map(str, cmd))}` exited {p.returncode}:\n{p.stderr.strip()}")


def timed(cmd, cwd, env):
    t = time.perf_counter()
    run(cmd, cwd=cwd, env=env)
    return time.perf_counter() - t


class Failed(Exception):
    """A command of the benchmark failed; its message carries the command's stderr."""


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


def cached_install(cache_root):
    """The folder holding package.json, package-lock.json and node_modules for PACKAGE_JSON,
    installed with npm the first time (into a staging folder renamed into place when done)."""
    text = json.dumps(PACKAGE_JSON, indent=2) + "\n"
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    done = cache_root / f"front-{key}"
    if (done / "node_modules").is_dir():
        return done
    cache_root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f"front-{key}.", dir=cache_root))
    try:
        (stage / "package.json").write_text(text)
        print(f"npm install into {stage} (once per package.json)...", file=sys.stderr)
        # The user's own environment: npm needs its registry config and cache.
        p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=stage)
        if p.returncode != 0:
            raise Failed(f"npm install exited {p.returncode}")
        for scratch in [".vite", ".vite-temp", ".cache"]:
            shutil.rmtree(stage / "node_modules" / scratch, ignore_errors=True)
        try:
            stage.rename(done)
        except OSError:  # another run finished first
            if not (done / "node_modules").is_dir():
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return done


def make_repo(path, cached, env):
    """The front repo, committed on main, with the cached node_modules copied in (ignored)."""
    path.mkdir(parents=True)
    run(["git", "init", "--quiet", "-b", "main"], cwd=path, env=env)
    for name in ["package.json", "package-lock.json"]:
        shutil.copy2(cached / name, path / name)
    for name, text in SOURCES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    run(["git", "add", "--all"], cwd=path, env=env)
    run(["git", "commit", "--quiet", "-m", "bench front"], cwd=path, env=env)
    run(["cp", "-a", str(cached / "node_modules"), str(path / "node_modules")])


def du(*paths):
    out = subprocess.run(["du", "-s", "-c", "--block-size=1", *map(str, paths)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return int(out.splitlines()[-1].split()[0])


def apparent_size(path):
    out = subprocess.run(["du", "-sb", str(path)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return int(out.split()[0])


def file_count(path):
    out = subprocess.run(["sh", "-c", 'find "$1" | wc -l', "find", str(path)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return int(out)


def bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_block(size=100, start=43000, stop=49000):
    """The first block of `size` ports, all of which bind right now."""
    for lo in range(start, stop, size):
        if all(bindable(p) for p in range(lo, lo + size)):
            return lo
    raise Failed(f"no block of {size} free ports in {start}-{stop}")


def grove_toml(mode, ports):
    """grove.toml for a grove mode; only the copy entry and `pool` differ between modes (mode
    None: no copy at all)."""
    entry = {
        None: "",
        "copy": '{ path = "node_modules", mode = "copy" }',
        "hardlink": '{ path = "node_modules", mode = "hardlink" }',
        "pool": '{ path = "node_modules", mode = "hardlink" }',
        "copy-legacy": '"node_modules"',
    }[mode]
    return (
        '[workspace]\nname = "bench"\ndefault_layers = ["front"]\n\n'
        '[layers.front]\nrepo = "front"\n'
        f"run = '{RUN}'\n"
        f'ports = "{ports[0]}-{ports[1]}"\n'
        f"copy = [{entry}]\n"
        'ready = { http = "/", timeout = 120 }\n'
        + ("pool = 1\n" if mode == "pool" else "")
    )


def http_status(port):
    """The status of GET / on the port, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def wait_http(port, proc, deadline):
    """Polls GET / every 20 ms until it answers 200; fails if the server exits or at deadline."""
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise Failed(f"vite exited {proc.returncode} before answering")
        if http_status(port) == 200:
            return
        time.sleep(0.02)
    raise Failed(f"vite did not answer 200 on port {port} in time")


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_group(proc, grace=5):
    """SIGTERM to the server's process group, SIGKILL to what is left of it after `grace`
    seconds. Waiting for `sh` alone is not enough: a Vite was once seen to stay up after its
    group got SIGTERM (its `sh` gone), holding its port after the benchmark ended."""
    pgid = proc.pid  # start_new_session: sh leads its own group
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.perf_counter() + grace
    while group_alive(pgid) and time.perf_counter() < deadline:
        time.sleep(0.05)
    if group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Bench:
    def __init__(self, grove, tmp, env, nm_disk):
        self.grove, self.tmp, self.env, self.nm_disk = grove, tmp, env, nm_disk
        self.ws = tmp / "ws"
        self.repo = self.ws / "front"
        self.ports = None
        self.hand_ports = None

    def hand(self, name):
        wt = self.tmp / "hand" / name
        port = next(p for p in range(*self.hand_ports) if bindable(p))
        t = time.perf_counter()
        run(["git", "-C", str(self.repo), "worktree", "add", "--quiet", "-b", name, str(wt), "main"], env=self.env)
        run(["cp", "-a", str(self.repo / "node_modules"), str(wt / "node_modules")])
        with open(self.tmp / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(["sh", "-c", RUN], cwd=wt, env={**self.env, "PORT": str(port)},
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            wait_http(port, proc, t + 120)
            elapsed = time.perf_counter() - t
            disk = du(self.repo / "node_modules", wt) - self.nm_disk
        except Failed as e:
            raise Failed(f"{e}\n{(self.tmp / f'{name}.log').read_text()[-2000:]}") from None
        finally:
            stop_group(proc)
            self.hand_cleanup(name)
        return elapsed, disk

    def hand_cleanup(self, name):
        wt = self.tmp / "hand" / name
        if wt.exists():
            run(["git", "-C", str(self.repo), "worktree", "remove", "--force", str(wt)], env=self.env)
        subprocess.run(["git", "-C", str(self.repo), "branch", "-D", name], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def grove_run(self, mode, name):
        (self.ws / "grove.toml").write_text(grove_toml(mode, self.ports))
        if mode == "pool":
            run([self.grove, "pool", "fill"], cwd=self.ws, env=self.env)
        try:
            elapsed = timed([self.grove, "create", name], self.ws, self.env)
            disk = du(self.repo / "node_modules", self.worktree(name)) - self.nm_disk
            port = self.port(name)
            status = http_status(port)
            if status != 200:
                raise Failed(f"grove create {name} returned but GET / on port {port} "
                             f"answers {status}")
        finally:
            self.destroy(name)
        return elapsed, disk

    def worktree(self, name):
        out = subprocess.run([self.grove, "path", name, "front"], cwd=self.ws, env=self.env, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        return Path(out.strip())

    def port(self, name):
        out = subprocess.run([self.grove, "ps", "--json"], cwd=self.ws, env=self.env, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        env = next(e for e in json.loads(out)["envs"] if e["name"] == name)
        return next(layer["port"] for layer in env["layers"] if layer["name"] == "front")

    def destroy(self, name):
        subprocess.run([self.grove, "destroy", name, "--yes", "--force"], cwd=self.ws, env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def warm_grove(self):
        """Makes grove's store and reads its binary once, untimed, without copying anything."""
        (self.ws / "grove.toml").write_text(grove_toml(None, self.ports))
        run([self.grove, "create", "warm", "--no-start"], cwd=self.ws, env=self.env)
        run([self.grove, "destroy", "warm", "--yes"], cwd=self.ws, env=self.env)

    def one(self, mode, name):
        return self.hand(name) if mode == "hand" else self.grove_run(mode, name)

    def cleanup(self, drain):
        """Destroys the envs a failed run left, and drains the pool."""
        if not (self.ws / "grove.toml").exists():
            return
        # A config every grove accepts, whatever mode the last run wrote.
        (self.ws / "grove.toml").write_text(grove_toml("copy-legacy", self.ports))
        out = subprocess.run([self.grove, "ps", "--json"], cwd=self.ws, env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        try:
            for e in json.loads(out)["envs"]:
                self.destroy(e["name"])
        except (ValueError, KeyError):
            pass
        if not drain:
            return
        (self.ws / "grove.toml").write_text(grove_toml("pool", self.ports))
        subprocess.run([self.grove, "pool", "drain"], cwd=self.ws, env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(times, disks, nm_disk):
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "times_s": [round(t, 3) for t in times],
        "disk_bytes": int(statistics.median(disks)),
        "disk_ratio": round(statistics.median(disks) / nm_disk, 4),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--grove")
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"comma-separated, of {', '.join(MODES + EXTRA_MODES)} (default: {','.join(MODES)})")
    ap.add_argument("--cache", default="/tmp/grove-bench-cache", help="where the npm install is cached")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES + EXTRA_MODES]
    if bad or not modes:
        ap.error(f"unknown mode(s) {', '.join(bad)}; choose from {', '.join(MODES + EXTRA_MODES)}")
    grove = args.grove and str(Path(args.grove).resolve())
    if not grove and modes != ["hand"]:
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
        grove = str(ROOT / "target/release/grove")

    # SIGTERM or SIGHUP unwind like Ctrl-C, so the cleanup below stops the servers.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda n, _: sys.exit(128 + n))
    cached = cached_install(Path(args.cache))
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="grove-bench-")).resolve()
    bench = None
    results, errors = {}, {}
    try:
        env = make_env(tmp)
        make_repo(tmp / "ws" / "front", cached, env)
        nm = tmp / "ws" / "front" / "node_modules"
        nm_bytes, nm_files, nm_disk = apparent_size(nm), file_count(nm), du(nm)
        print(f"node_modules: {nm_bytes / 1e6:.1f} MB (du -sb), {nm_files} files (find | wc -l), "
              f"{nm_disk / 1e6:.1f} MB on disk", file=sys.stderr)
        if nm_bytes < 250e6 or nm_files < 25000:
            print("warning: the fixture is below 250 MB or 25,000 files", file=sys.stderr)
        bench = Bench(grove, tmp, env, nm_disk)
        lo = free_block()
        bench.ports, bench.hand_ports = (lo, lo + 49), (lo + 50, lo + 100)
        samples = {m: ([], []) for m in modes}
        # Untimed: a hand run reads node_modules into the page cache and starts Vite once;
        # grove makes its store. Then one of each mode per round, so every mode sees the same
        # machine state.
        elapsed, _ = bench.hand("warm")
        print(f"  warm-up  hand        {elapsed:7.2f} s", file=sys.stderr)
        if grove:
            bench.warm_grove()
        for i in range(1, args.runs + 1):
            for mode in modes:
                if mode in errors:
                    continue
                try:
                    elapsed, disk = bench.one(mode, f"{mode}-{i}")
                except Failed as e:
                    errors[mode] = str(e)
                    print(f"{mode}: failed: {e}", file=sys.stderr)
                    continue
                print(f"  run {i}  {mode:<11} {elapsed:7.2f} s  {disk / 1e6:8.1f} MB", file=sys.stderr)
                samples[mode][0].append(elapsed)
                samples[mode][1].append(disk)
        if "pool" in modes and grove:
            (bench.ws / "grove.toml").write_text(grove_toml("pool", bench.ports))
            try:
                run([grove, "pool", "drain"], cwd=bench.ws, env=env)
            except Failed as e:
                errors.setdefault("pool", str(e))
        results = {m: summarize(*samples[m], nm_disk) for m in modes if m not in errors}
    finally:
        if bench and grove:
            bench.cleanup(drain="pool" in modes)
        shutil.rmtree(tmp, ignore_errors=True)

    hand = results.get("hand")
    for r in results.values():
        r["time_ratio_to_hand"] = round(r["median_s"] / hand["median_s"], 3) if hand else None
    wall = time.perf_counter() - started
    result = {
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "wall_s": round(wall, 1),
        "fixture": {
            "package_json": PACKAGE_JSON,
            "node_modules_bytes": nm_bytes,
            "node_modules_files": nm_files,
            "node_modules_disk_bytes": nm_disk,
        },
        "modes": results,
        "errors": errors,
    }
    print(f"create-to-ready, Vite front with node_modules of {nm_bytes / 1e6:.0f} MB / {nm_files} files "
          f"({nm_disk / 1e6:.0f} MB on disk), median of {args.runs}:")
    print(f"  {'mode':<12}{'median':>9}{'min':>9}{'max':>9}{'vs hand':>9}{'disk/env':>12}{'vs deps':>9}")
    for mode in modes:
        if mode in errors:
            lines = errors[mode].splitlines() or [""]
            print(f"  {mode:<12}failed: {next((x for x in lines if x.startswith('error:')), lines[0])}")
            continue
        r = results[mode]
        ratio = f"{r['time_ratio_to_hand']:.2f}" if r["time_ratio_to_hand"] is not None else "-"
        print(f"  {mode:<12}{r['median_s']:8.2f}s{r['min_s']:8.2f}s{r['max_s']:8.2f}s{ratio:>9}"
              f"{r['disk_bytes'] / 1e6:9.1f} MB{r['disk_ratio']:9.3f}")
    print(f"({wall:.0f} s in all, npm install not counted)")
    out = ROOT / "bench/out"
    out.mkdir(exist_ok=True)
    (out / "create.json").write_text(json.dumps(result, indent=2) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
