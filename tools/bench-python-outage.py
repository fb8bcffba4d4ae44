"""Time for a Python client to give up on 8 queued checkpoints while nothing listens (stall 300 ms,
reconnect 1500 ms), for two copies of wsm_client side by side, interleaved, 3 rounds, medians:

    git archive 98a0c9f protocol | tar -x -C /tmp/old    # the client before the outage policies
    python3 tools/bench-python-outage.py /tmp/old/protocol/python protocol/python
"""
import statistics
import subprocess
import sys

CHILD = r'''
import logging, socket, sys, time
logging.disable(logging.WARNING)
sys.path.insert(0, sys.argv[1])
import numpy as np, wsm_client
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
c = wsm_client.MergerClient(f"tcp://127.0.0.1:{port}", run_id="b", stall_timeout_ms=300, reconnect_timeout_ms=1500)
for step in range(8):
    c.send_checkpoint(step, step, 1e-3, {"w": np.zeros(1000, np.float32)})
t0 = time.monotonic()
try:
    c.close()
except Exception:
    pass
print(time.monotonic() - t0)
'''


def main():
    dirs = sys.argv[1:]
    times = {d: [] for d in dirs}
    for _ in range(3):
        for d in dirs:
            out = subprocess.run([sys.executable, "-c", CHILD, d], capture_output=True, text=True, check=True)
            times[d].append(float(out.stdout.strip().splitlines()[-1]))
    for d in dirs:
        print(f"{d}: close() after 8 queued checkpoints, merger absent: median {statistics.median(times[d]):.2f} s "
              f"(rounds {', '.join(f'{t:.2f}' for t in times[d])})")


if __name__ == "__main__":
    main()
