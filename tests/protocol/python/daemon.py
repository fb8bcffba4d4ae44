"""A real `wsm serve` on 127.0.0.1 for the Python client's tests: started on a free port (read back
from its log), killed or stopped by the test, every wait bounded in time. WSM_BIN names the binary."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import numpy as np

WSM_BIN = os.environ.get("WSM_BIN", "build/wsm")


class Daemon:
    def __init__(self, emulate="linear:200", every=100, port=None, out=None, extra=()):
        self.out = out or tempfile.mkdtemp(prefix="wsm-py-out-")
        listen = f"tcp://127.0.0.1:{port}" if port else "tcp://127.0.0.1:*"
        self.proc = subprocess.Popen([WSM_BIN, "serve", "--listen", listen, "--out", self.out, "--emulate", emulate,
                                      "--every", str(every), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log = []
        self.endpoint = None
        ready = threading.Event()

        def read_log():
            for line in self.proc.stdout:  # wsm logs to stdout
                self.log.append(line)
                m = re.search(r"listening on (tcp://127\.0\.0\.1:\d+)", line)
                if m and not ready.is_set():
                    self.endpoint = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read_log, daemon=True).start()
        if not ready.wait(20) or self.endpoint is None:
            self.kill()
            raise RuntimeError("wsm serve did not start:\n" + "".join(self.log))
        self.port = int(self.endpoint.rsplit(":", 1)[1])

    def kill(self):
        """An outage: SIGKILL, no goodbye."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.out, ignore_errors=True)


def free_port():
    """A loopback port nothing listens on (bound, then released). It lies below the kernel's
    ephemeral range: a port from that range could be handed to another test's socket before the
    daemon binds it (as serve_test_util.h's free_loopback_endpoint explains)."""
    import random
    import socket

    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    for _ in range(200):
        port = random.randint(10000, max(11000, ephemeral_low) - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def model(step, scale=1.0):
    """A small state dict whose values depend on the step (numpy arrays)."""
    i = np.arange(64 * 16, dtype=np.float64)
    w = (np.sin(0.01 * i + 0.001 * step) * scale).astype(np.float32).reshape(64, 16)
    return {"layer.weight": w, "layer.bias": np.full(16, step * 0.5, dtype=np.float32),
            "step_counter": np.array([step], dtype=np.int64)}


def wait_until(predicate, timeout_s, interval_s=0.05):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
