#!/usr/bin/env python3
"""Peak memory of `wsm serve` against its --memory-budget (issue 12, item 6).

Each scenario starts its own `wsm serve` on 127.0.0.1, drives it, reads the daemon's peak resident
set (VmHWM in /proc/PID/status) and checks that it still answers a status request:

  partials  PEERS peers each say Hello for a checkpoint of BUDGET/4 and send all of it but its last
            chunk, as fast as they can (credit ignored), and never finish: the budget admits 3 at a
            time with room for the window's next one (the rest get OVER_BUDGET)
  garbage   one 256 MiB garbage frame, then 16 frames just under the frame limit (garbage too)
  steady    a wsm_client streams checkpoints of BUDGET/8 for STEPS steps with a window of 12
            checkpoints and outputs every 4; with --store (spilling) and running sums on, and
            without a store (running sums off, a window of 6 that fits)

Prints one line per scenario: peak RSS, budget, peak minus the idle daemon's RSS, and what the
daemon held by its own count (window in RAM, from StatusReply) at the end.

  usage: tools/bench-memory.py --wsm build/wsm [--budget-mb 256] [--scenarios partials,garbage,steady]
"""
import argparse
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "protocol" / "python"))

MiB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


class Daemon:
    def __init__(self, wsm, budget, extra, workdir):
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.log = open(workdir / "serve.log", "w")
        args = [wsm, "serve", "--listen", self.endpoint, "--out", str(workdir / "out"),
                "--memory-budget", str(budget), "--log-level", "warn"] + extra
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        import wsm_client

        for _ in range(200):
            try:
                wsm_client.status(self.endpoint, timeout_ms=200)
                break
            except wsm_client.MergerError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"wsm serve exited: see {workdir / 'serve.log'}")
        time.sleep(0.2)
        self.idle_rss = proc_status(self.proc.pid)["VmRSS"]
        # The kernel keeps only the total's peak (VmHWM): anonymous and file-backed (mapped files:
        # the store, outputs) are sampled.
        self.peak_anon = self.peak_file = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self):
        while self._sampling:
            try:
                st = proc_status(self.proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                return
            self.peak_anon = max(self.peak_anon, st.get("RssAnon", 0))
            self.peak_file = max(self.peak_file, st.get("RssFile", 0))
            time.sleep(0.01)

    def alive(self):
        import wsm_client

        try:
            return self.proc.poll() is None and wsm_client.status(self.endpoint, timeout_ms=5000)
        except wsm_client.MergerError:
            return None

    def stop(self):
        self._sampling = False
        self._sampler.join()
        peak = proc_status(self.proc.pid)["VmHWM"]
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()
        return peak


def envelope(pb, **body):
    env = pb.Envelope(version=1)
    for name, fields in body.items():
        getattr(env, name).SetInParent()
        for k, v in fields.items():
            setattr(getattr(env, name), k, v)
    return env


def partials(daemon, budget, peers):
    """PEERS peers, each holding all but the last chunk of a BUDGET/4 checkpoint."""
    import zmq
    from wsm_client import _xxh3
    from wsm_client._proto import pb

    ctx = zmq.Context()
    chunk = 4 * MiB
    elements = budget // 4 // 4
    payload = os.urandom(chunk)
    digest = _xxh3.checksum(payload)
    socks, outcomes = [], {}
    for i in range(peers):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(daemon.endpoint)
        hello = envelope(pb, hello={"protocol_version": 1, "run_id": f"partial-{i}", "client": "bench-memory"})
        hello.hello.manifest.add(name="w", dtype="f32", shape=[elements])
        s.send(hello.SerializeToString())
        s.send(envelope(pb, begin={"step": 100, "tokens": 100}).SerializeToString())
        nbytes = elements * 4
        for off in range(0, nbytes - chunk, chunk):  # all but the last chunk
            c = envelope(pb, chunk={"step": 100, "name": "w", "offset": off, "length": chunk, "checksum": digest})
            s.send(c.SerializeToString(), zmq.SNDMORE)
            s.send(payload, copy=False)
        socks.append(s)
    time.sleep(2.0)  # the daemon reads what was sent
    for i, s in enumerate(socks):
        outcomes[i] = "held"
        while s.poll(0):
            m = pb.Envelope()
            m.ParseFromString(s.recv_multipart()[0])
            if m.WhichOneof("body") == "error":
                outcomes[i] = pb.ErrorCode.Name(m.error.code)
    held = sum(1 for v in outcomes.values() if v == "held")
    refused = sum(1 for v in outcomes.values() if v == "OVER_BUDGET")
    alive = daemon.alive()
    for s in socks:
        s.close()
    ctx.term()
    return f"{peers} peers with a {elements * 4 / MiB:.0f} MiB checkpoint each: {held} held, {refused} OVER_BUDGET", alive


def garbage(daemon, budget, frame_limit):
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(daemon.endpoint)
    s.send(b"\xab" * (256 * MiB))
    time.sleep(1.0)
    s.close()
    junk = b"\xcd" * (frame_limit - MiB)
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(daemon.endpoint)
    for _ in range(16):
        s.send(junk, copy=False)
    answered = 0
    deadline = time.monotonic() + 20
    while answered < 16 and time.monotonic() < deadline:
        if s.poll(500):
            s.recv_multipart()
            answered += 1
    alive = daemon.alive()
    s.close()
    ctx.term()
    return f"one 256 MiB frame, then 16 frames of {(frame_limit - MiB) / MiB:.0f} MiB ({answered} answered MALFORMED)", alive


def steady(daemon, budget, steps):
    import numpy as np
    import wsm_client

    elements = budget // 8 // 4
    client = wsm_client.MergerClient(daemon.endpoint, run_id="steady", chunk_bytes=4 * MiB)
    values = np.random.default_rng(0).standard_normal(elements, dtype=np.float32)
    for step in range(1, steps + 1):
        values += 1e-3
        client.send_checkpoint(step, step, 1e-3, {"w": values})
        client.flush()
    while wsm_client.status(daemon.endpoint)["pending"]:
        time.sleep(0.1)
    client.close()
    st = wsm_client.status(daemon.endpoint)
    alive = daemon.alive()
    return (f"{steps} checkpoints of {elements * 4 / MiB:.0f} MiB; at the end window {len(st['window'])} "
            f"checkpoints, {int(st['memory_bytes']) / MiB:.0f} MiB in RAM, running sums "
            f"{int(st['running_sum_bytes']) / MiB:.0f} MiB, {st['outputs_written']} outputs"), alive


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsm", required=True)
    ap.add_argument("--budget-mb", type=int, default=256)
    ap.add_argument("--peers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--scenarios", default="partials,garbage,steady")
    args = ap.parse_args()
    gen = ROOT / "build" / "gen" / "python"
    if (pathlib.Path(args.wsm).resolve().parent / "gen" / "python").is_dir():
        gen = pathlib.Path(args.wsm).resolve().parent / "gen" / "python"
    os.environ.setdefault("WSM_PB2_DIR", str(gen))
    budget = args.budget_mb * MiB
    frame_limit = min(64 * MiB, budget) + MiB  # merger::max_message_bytes with the default chunk size
    window = ["--emulate", "linear@12", "--every", "4"]
    runs = {
        "partials": [("", window, lambda d: partials(d, budget, args.peers))],
        "garbage": [("", window, lambda d: garbage(d, budget, frame_limit))],
        "steady": [("--store, running sums on, window 12", window + ["--store", "STORE"],
                    lambda d: steady(d, budget, args.steps)),
                   ("no store, running sums off, window 6", ["--emulate", "linear@6", "--every", "4",
                                                             "--running-sums", "off"],
                    lambda d: steady(d, budget, args.steps))],
    }
    print(f"wsm serve --memory-budget {args.budget_mb}M ({args.wsm}); load {os.getloadavg()[0]:.1f}", flush=True)
    failed = False
    for name in args.scenarios.split(","):
        for label, extra, drive in runs[name]:
            workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"wsm-bench-memory-{name}-"))
            extra = [str(workdir / "store") if x == "STORE" else x for x in extra]
            daemon = Daemon(args.wsm, budget, extra, workdir)
            try:
                what, alive = drive(daemon)
            finally:
                peak = daemon.stop()
            over = peak - budget
            print(f"{name:9s} {label}\n          {what}\n          peak RSS {peak / MiB:.0f} MiB, budget "
                  f"{budget / MiB:.0f} MiB, peak - budget {over / MiB:+.0f} MiB, idle daemon {daemon.idle_rss / MiB:.0f} "
                  f"MiB, still serving: {'yes' if alive else 'NO'}\n          sampled peaks: anonymous {daemon.peak_anon / MiB:.0f} "
                  f"MiB, file-backed {daemon.peak_file / MiB:.0f} MiB", flush=True)
            failed |= not alive
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
