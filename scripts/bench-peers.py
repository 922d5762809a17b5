#!/usr/bin/env python3
"""Throughput from raw .eml to verdict: Starling through a network node
beside the peers rspamd (fuzzy_check + fuzzy_storage) and Pyzor, in one run,
on the same corpus, each through its own bulk client.

Each system first learns spam-1 (Starling: reports by a spam-trap feed;
rspamd: /fuzzyadd; Pyzor: `pyzor report`), then checks every message of the
corpus (6,046) three times; the best run counts.

    scripts/bench peers          (via scripts/bench)

Needs the release binary, the corpus at target/corpus, and for the peers
Debian's pyzor, python3-gdbm and rspamd (scripts/eval --install).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("STARLING_SHARED", os.path.join(ROOT, "..", "shared"))
PEERS = os.path.join(SHARED, "eval", "peers")
CORPUS = os.path.join(ROOT, "target", "corpus")
STARLING = os.path.join(ROOT, "target", "release", "starling")
DEV = [os.path.join(CORPUS, g) for g in ("spam-1", "easy-ham-1", "hard-ham-1", "spam-2", "easy-ham-2")]
LEARN = os.path.join(CORPUS, "spam-1")
RUNS = 3


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def files(dirs):
    return sorted(os.path.join(d, f) for d in dirs for f in os.listdir(d) if f.endswith(".eml"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def best_of(run):
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def starling(messages):
    tmp = tempfile.mkdtemp(prefix="starling-bench-")
    port = free_port()
    config = os.path.join(tmp, "node.toml")
    with open(config, "w") as f:
        f.write("[limits]\nchecks_per_second = 1e12\nreports_per_second = 1e12\n")
    node = subprocess.Popen([STARLING, "network", "serve", "--config", config, "--data", os.path.join(tmp, "data"),
                             "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, STARLING_LOG="warn"))
    try:
        for line in node.stderr:
            if "listening on" in line:
                break
        operator = ["--network", f"127.0.0.1:{port}", "--data", os.path.join(tmp, "data")]
        created = json.loads(subprocess.check_output([STARLING, "network", "org", "add", "feed", "--feed", "--json"]
                                                     + operator))
        checker = json.loads(subprocess.check_output([STARLING, "network", "org", "add", "checker", "--json"]
                                                     + operator))
        for name, org in (("feed", created), ("checker", checker)):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(org["credential"])
        subprocess.check_call([STARLING, "report", "spam", "--reporter", "trap", "--network", f"127.0.0.1:{port}",
                               "--credential-file", os.path.join(tmp, "feed"), LEARN])
        cmd = [STARLING, "check", "--quiet", "--network", f"127.0.0.1:{port}",
               "--credential-file", os.path.join(tmp, "checker")] + DEV
        seconds = best_of(lambda: subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL))
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stderr.strip()
        log("starling:", out)
        return seconds
    finally:
        node.terminate()
        node.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def mbox(paths, target):
    with open(target, "wb") as out:
        for p in paths:
            with open(p, "rb") as f:
                data = f.read()
            out.write(b"From bench@example.invalid Thu Jan  1 00:00:00 2002\n")
            for line in data.split(b"\n"):
                out.write((b">" + line if line.startswith(b"From ") else line) + b"\n")
            out.write(b"\n")


def pyzor(messages):
    if not shutil.which("pyzord"):
        log("pyzor not installed: skipped")
        return None
    env = dict(os.environ)
    exports = subprocess.check_output([os.path.join(PEERS, "pyzor", "start")], text=True)
    for line in exports.splitlines():
        key, value = line.replace("export ", "").split("=", 1)
        env[key] = value.strip("'\"")
    tmp = tempfile.mkdtemp(prefix="pyzor-bench-")
    try:
        servers = os.path.join(tmp, "servers")
        with open(servers, "w") as f:
            f.write(env["PYZOR_SERVER"] + "\n")
        base = ["pyzor", "--homedir", tmp, "--servers-file", servers, "-s", "mbox"]
        learn, check = os.path.join(tmp, "learn.mbox"), os.path.join(tmp, "check.mbox")
        mbox(files([LEARN]), learn)
        mbox(messages, check)
        with open(learn, "rb") as f:
            subprocess.run(base + ["report"], stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def run():
            with open(check, "rb") as f:
                subprocess.run(base + ["check"], stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return best_of(run)
    finally:
        subprocess.run([os.path.join(PEERS, "pyzor", "stop"), env["PYZOR_STATE"]], env=env)
        shutil.rmtree(tmp, ignore_errors=True)


def rspamd(messages):
    if not shutil.which("rspamd") or not shutil.which("rspamc"):
        log("rspamd not installed: skipped")
        return None
    state = tempfile.mkdtemp(prefix="rspamd-bench-")
    env = dict(os.environ)
    env.setdefault("RSPAMD_HS_CACHE", os.path.join(ROOT, "target", "rspamd-hs"))
    os.makedirs(env["RSPAMD_HS_CACHE"], exist_ok=True)
    subprocess.check_call([os.path.join(PEERS, "rspamd", "start"), state], env=env, stdout=subprocess.DEVNULL)
    try:
        ports = dict(line.split("=", 1) for line in open(os.path.join(state, "ports.env")).read().split())
        for path in files([LEARN]):
            with open(path, "rb") as f:
                req = urllib.request.Request(f"http://{ports['RSPAMD_CONTROLLER']}/fuzzyadd", data=f.read(),
                                             headers={"Flag": "1", "Weight": "1"})
            try:
                urllib.request.urlopen(req, timeout=10).read()
            except urllib.error.HTTPError:
                pass  # "no content to generate fuzzy"
        subprocess.run(["rspamadm", "control", "-s", os.path.join(state, "rspamd.sock"), "fuzzysync"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cmd = ["rspamc", "-h", ports["RSPAMD_NORMAL"], "-n", "8", "-t", "30"] + DEV
        return best_of(lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    finally:
        subprocess.run([os.path.join(PEERS, "rspamd", "stop"), "--clean", state], stdout=subprocess.DEVNULL)


def main():
    messages = files(DEV)
    n = len(messages)
    log(f"{n} messages; best of {RUNS} runs each")
    results = [("starling (node, `starling check`, batches of 64)", starling(messages)),
               ("rspamd 3.4 (`rspamc -n 8`, fuzzy_check only)", rspamd(messages)),
               ("pyzor 1.0 (`pyzor check`, mbox)", pyzor(messages))]
    rates = {name: n / s for name, s in results if s}
    fastest_peer = max((r for name, r in rates.items() if not name.startswith("starling")), default=None)
    print(f"| system | messages | seconds | messages/s | vs the faster peer |")
    print(f"| --- | ---: | ---: | ---: | ---: |")
    for name, s in results:
        if s is None:
            print(f"| {name} | {n} | – | not installed | |")
            continue
        ratio = f"{rates[name] / fastest_peer:.1f} ×" if fastest_peer else ""
        print(f"| {name} | {n} | {s:.2f} | {n / s:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
