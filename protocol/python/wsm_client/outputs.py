"""Learning of the merger's new outputs without polling files: a long poll on the daemon
(OutputsRequest, docs/protocol.md). Each output the daemon writes gets a sequence number; a request
for those after N returns at once when there are some, else as soon as one is written.

    watcher = wsm_client.OutputWatcher("tcp://127.0.0.1:5555", run_id="gpt")
    for record in watcher.wait(timeout_s=600):           # [] when none came in time
        evaluate(record["path"], record["step"], record["spec"])

A record is the output's index.json entry (path, run_id, step, label, spec, window, sources,
weights, ...) plus "seq".
"""
import json
import time

from .client import _request

_MAX_WAIT_MS = 60000  # the daemon holds a request at most this long


def wait_for_output(endpoint, after=0, run_id="", timeout_s=60.0):
    """Outputs written after sequence number `after` (of run_id, or every run), waiting up to
    timeout_s for the first. Returns {"server_id", "latest", "outputs": [record, ...]}."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    while True:
        wait_ms = int(min(_MAX_WAIT_MS, max(0.0, deadline - time.monotonic()) * 1000))

        def fill(e, wait_ms=wait_ms):
            e.outputs_request.after = int(after)
            e.outputs_request.run_id = run_id
            e.outputs_request.timeout_ms = wait_ms

        reply = _request(endpoint, fill, wait_ms + 10000).outputs_reply
        outputs = [json.loads(r) for r in reply.records]
        if outputs or time.monotonic() >= deadline:
            return {"server_id": reply.server_id, "latest": reply.latest, "outputs": outputs}


class OutputWatcher:
    """Remembers where it is: each wait() returns only outputs it has not returned before. After a
    daemon restart (a new server_id) it starts again from the daemon's first output."""

    def __init__(self, endpoint, run_id="", after=0):
        self.endpoint, self.run_id, self.after = endpoint, run_id, int(after)
        self.server_id = None

    def wait(self, timeout_s=60.0):
        batch = wait_for_output(self.endpoint, self.after, self.run_id, timeout_s)
        if self.server_id is not None and batch["server_id"] != self.server_id:
            self.server_id, self.after = batch["server_id"], 0
            return self.wait(0)  # the restarted daemon's outputs so far
        self.server_id = batch["server_id"]
        if batch["outputs"]:
            self.after = batch["outputs"][-1]["seq"]
        elif batch["latest"] < self.after:  # numbered anew without our noticing (first call after a restart)
            self.after = 0
        return batch["outputs"]
