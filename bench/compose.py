#!/usr/bin/env python3
"""grove compose benchmark: create-to-ready of a one-layer compose env (`grove create`, which
returns once its HTTP probe answers) against doing it by hand in the same run (`git worktree
add`, then `docker compose up -d --wait` from the worktree with the port published by an
override file), each followed by a poll until the page answers. Also `grove ps --json` with
20 running container envs, against `docker compose ls` and one `docker ps -a --filter label=…`.

    python3 bench/compose.py [--runs N] [--envs N] [--grove PATH] [--docker-host URL]

The engine is --docker-host, else DOCKER_HOST, else Docker's default. No registry is needed:
the image is /bin/busybox, imported. Builds grove in release mode unless --grove is given.
Everything happens in a temp folder with its own HOME, GROVE_HOME and git config; everything
made on the engine is removed at the end, even on failure. Prints a table and writes
bench/out/compose.json.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core import ROOT, make_env, median_ms, run, timed  # noqa: E402

IMAGE = "grove-bench/busybox:1"
COMPOSE = (
    f"services:\n  web:\n    image: {IMAGE}\n"
    '    command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]\n    volumes: ["./www:/www"]\n'
)
# What grove's override adds that matters to the container: the published port, and an init
# (httpd as PID 1 ignores SIGTERM: without one every `down` waits 10 s).
RAW_OVERRIDE = 'services:\n  web:\n    init: true\n    ports: ["127.0.0.1:${RAW_PORT}:8080"]\n'
PS_FORMAT = '{{.Label "dev.grove.token"}}\t{{.Label "dev.grove.layer"}}\t{{.State}}\t{{.Status}}\t{{.Names}}'
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy for localhost


def output(cmd, cwd=None, env=None):
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def quiet(cmd, cwd=None, env=None):
    """Cleanup: never raises, says what failed."""
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode:
        print(f"cleanup: {' '.join(cmd)}: {p.stderr.strip()}", file=sys.stderr)


def wait_http(port, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with HTTP.open(f"http://127.0.0.1:{port}/index.html", timeout=1) as r:
                r.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers on port {port}")
            time.sleep(0.005)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def import_image(tmp, env):
    bin_dir = tmp / "image/bin"
    bin_dir.mkdir(parents=True)
    shutil.copy("/bin/busybox", bin_dir / "busybox")
    for applet in ["sh", "httpd", "ls", "cat", "sleep"]:
        (bin_dir / applet).symlink_to("busybox")
    run(["tar", "-C", str(tmp / "image"), "-cf", str(tmp / "image.tar"), "."])
    run(["docker", "import", str(tmp / "image.tar"), IMAGE], env=env)


def compose_ws(ws, env):
    web = ws / "web"
    (web / "www").mkdir(parents=True)
    run(["git", "init", "--quiet", "-b", "main"], cwd=web, env=env)
    (web / "www/index.html").write_text("main page\n")
    (web / "compose.yaml").write_text(COMPOSE)
    run(["git", "add", "--all"], cwd=web, env=env)
    run(["git", "commit", "--quiet", "-m", "web"], cwd=web, env=env)
    (ws / "grove.toml").write_text(
        '[workspace]\ndefault_layers = ["web"]\n[layers.web]\nrepo = "web"\nports = "27100-27199"\n'
        'compose = { service = "web", port = 8080 }\nready = { http = "/index.html" }\n'
    )


def grove_envs(grove, ws, env):
    return json.loads(output([grove, "ps", "--json"], cwd=ws, env=env))["envs"]


class Bench:
    def __init__(self, grove, tmp, env):
        self.grove, self.tmp, self.env, self.ws = grove, tmp, env, tmp / "ws"
        self.raw_projects, self.key = [], None

    def grove_up(self, name):
        """`grove create`, then the page: seconds."""
        t = time.perf_counter()
        out = output([self.grove, "create", name], cwd=self.ws, env=self.env)
        port = int(re.search(r"http://localhost:(\d+)", out).group(1))
        wait_http(port)
        return time.perf_counter() - t

    def grove_down(self, name):
        run([self.grove, "destroy", name, "--yes"], cwd=self.ws, env=self.env)

    def raw_up(self, i, wait=True):
        wt, project = self.tmp / f"raw/r{i}", f"grove-bench-raw-{i}"
        port = free_port()
        env = dict(self.env, RAW_PORT=str(port))
        self.raw_projects.append(project)
        t = time.perf_counter()
        run(["git", "-C", str(self.ws / "web"), "worktree", "add", "--quiet", "-b", f"r{i}", str(wt), "main"], env=env)
        up = ["up", "-d", "--quiet-pull"] + (["--wait"] if wait else [])
        run(["docker", "compose", "-p", project, "-f", "compose.yaml", "-f", str(self.tmp / "raw.yaml"), *up],
            cwd=wt, env=env)
        wait_http(port)
        return time.perf_counter() - t

    def raw_down(self, i):
        run(["docker", "compose", "-p", f"grove-bench-raw-{i}", "down", "--volumes", "--remove-orphans"], env=self.env)
        run(["git", "-C", str(self.ws / "web"), "worktree", "remove", "--force", str(self.tmp / f"raw/r{i}")], env=self.env)
        run(["git", "-C", str(self.ws / "web"), "branch", "-D", f"r{i}"], env=self.env)

    def create(self, runs):
        (self.tmp / "raw.yaml").write_text(RAW_OVERRIDE)
        # Warm the page cache, the engine and grove's store once, untimed.
        self.raw_up(99)
        self.raw_down(99)
        self.grove_up("warm")
        # The workspace's key, as grove labels what it makes: what the sweep at the end looks for.
        wt = grove_envs(self.grove, self.ws, self.env)[0]["layers"][0]["worktree"]
        self.key = output(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project.working_dir={wt}",
                           "--format", '{{.Label "dev.grove.workspace"}}'], env=self.env).strip()
        self.grove_down("warm")
        raw_t, nowait_t, grove_t = [], [], []
        for i in range(runs):
            # Interleaved, so all see the same machine state; teardown is not timed.
            raw_t.append(self.raw_up(i))
            self.raw_down(i)
            nowait_t.append(self.raw_up(100 + i, wait=False))
            self.raw_down(100 + i)
            grove_t.append(self.grove_up(f"g{i}"))
            self.grove_down(f"g{i}")
        return median_ms(raw_t), median_ms(nowait_t), median_ms(grove_t)

    def ps(self, envs, runs):
        t = time.perf_counter()
        for i in range(envs):
            self.grove_up(f"e{i:02d}")
        made = time.perf_counter() - t
        running = sum(e["status"] == "running" for e in grove_envs(self.grove, self.ws, self.env))
        docker_ps = ["docker", "ps", "-a", "--no-trunc", "--filter", f"label=dev.grove.workspace={self.key}",
                     "--format", PS_FORMAT]
        containers = len(output(docker_ps, env=self.env).splitlines())
        ps_t, ls_t, dps_t = [], [], []
        for _ in range(runs):
            ps_t.append(timed([self.grove, "ps", "--json"], self.ws, self.env))
            ls_t.append(timed(["docker", "compose", "ls"], self.ws, self.env))
            dps_t.append(timed(docker_ps, self.ws, self.env))
        return made, running, containers, median_ms(ps_t), median_ms(ls_t), median_ms(dps_t)

    def cleanup(self):
        """Destroys every env, downs the raw projects, removes the image: what destroy left."""
        names = []
        if (self.ws / "grove.toml").exists():
            try:
                names = [e["name"] for e in grove_envs(self.grove, self.ws, self.env)]
            except (subprocess.CalledProcessError, ValueError) as e:
                print(f"cleanup: grove ps: {e}", file=sys.stderr)
        for name in names:
            quiet([self.grove, "destroy", name, "--yes", "--force"], cwd=self.ws, env=self.env)
        for project in self.raw_projects:
            quiet(["docker", "compose", "-p", project, "down", "--volumes", "--remove-orphans"], env=self.env)
        left = []
        for kind, ls, rm in [("container", ["ps", "-a"], ["rm", "-f"]), ("network", ["network", "ls"], ["network", "rm"])]:
            label = ["--filter", f"label=dev.grove.workspace={self.key}"]
            ids = subprocess.run(["docker", *ls, "-q", *label], env=self.env, capture_output=True, text=True).stdout.split()
            if self.key and ids:
                left += [f"{kind} {x}" for x in ids]
                quiet(["docker", *rm, *ids], env=self.env)
        quiet(["docker", "image", "rm", IMAGE], env=self.env)
        return left


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--envs", type=int, default=20)
    ap.add_argument("--ps-runs", type=int, default=15)
    ap.add_argument("--grove")
    ap.add_argument("--docker-host", default=os.environ.get("DOCKER_HOST"))
    args = ap.parse_args()
    grove = args.grove and str(Path(args.grove).resolve())
    if not grove:
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
        grove = str(ROOT / "target/release/grove")
    tmp = Path(tempfile.mkdtemp(prefix="grove-bench-")).resolve()
    env = make_env(tmp)
    if args.docker_host:
        env["DOCKER_HOST"] = args.docker_host
    bench = Bench(grove, tmp, env)
    started = time.perf_counter()
    try:
        import_image(tmp, env)
        compose_ws(bench.ws, env)
        raw_c, nowait_c, grove_c = bench.create(args.runs)
        made, running, containers, ps, ls, dps = bench.ps(args.envs, args.ps_runs)
    except subprocess.CalledProcessError as e:
        sys.exit(f"failed: {' '.join(map(str, e.cmd))}\n{e.stderr}")
    finally:
        left = bench.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = grove_c / raw_c
    result = {
        **{k: getattr(args, k) for k in ["runs", "envs", "ps_runs"]},
        "raw_worktree_compose_up_ms": round(raw_c, 1),
        "raw_without_wait_ms": round(nowait_c, 1),
        "grove_create_ms": round(grove_c, 1),
        "create_ratio": round(ratio, 3),
        "create_target_met": ratio <= 1.10,
        "grove_create_envs_s": round(made, 2),
        "grove_ps_json_ms": round(ps, 1),
        "ps_target_met": ps <= 50,
        "docker_compose_ls_ms": round(ls, 1),
        "docker_ps_label_ms": round(dps, 1),
        "left_after_destroy": left,
        "total_s": round(time.perf_counter() - started, 1),
    }
    met = ["NOT met", "met"]
    print(f"create to ready, one compose layer, median of {args.runs}:")
    print(f"  git worktree add + compose up -d --wait + poll  {raw_c:8.1f} ms")
    print(f"  git worktree add + compose up -d + poll         {nowait_c:8.1f} ms   (no --wait: the poll decides)")
    print(f"  grove create + poll                             {grove_c:8.1f} ms   ratio {ratio:.3f}"
          f"  (target <= 1.10: {met[ratio <= 1.10]})")
    print(f"ps, {args.envs} envs ({running} running, {containers} containers), median of {args.ps_runs}:")
    print(f"  grove ps --json                                 {ps:8.1f} ms   (target <= 50 ms: {met[ps <= 50]})")
    print(f"  docker compose ls                               {ls:8.1f} ms")
    print(f"  docker ps -a --filter label=…                   {dps:8.1f} ms")
    print(f"  (making the {args.envs} envs took {made:.1f} s; total {result['total_s']} s)")
    if left:
        print(f"  left on the engine after grove destroy: {', '.join(left)}")
    out = ROOT / "bench/out"
    out.mkdir(exist_ok=True)
    (out / "compose.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
