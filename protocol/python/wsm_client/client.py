"""The Python client of `wsm serve`: the same calls and behaviour as wsm/client/client.h.

send_checkpoint() snapshots the tensors (one host copy) and returns; a background thread streams
the snapshots in order over a ZeroMQ DEALER: Hello, CheckpointBegin, chunks within the merger's
credit (payload frames sent without copies), CheckpointEnd, then waits for the Ack. The queue is
bounded by queue_bytes; when full, send_checkpoint waits for room and logs a warning. A NO_SESSION
error or a silent merger (stall_timeout_ms) opens a new socket and resends the checkpoint, until
reconnect_timeout_ms after it was queued. What happens during an outage is the client's policy
(delivery.py: wait, drop-oldest, fail-fast); OVER_BUDGET (the merger's memory is taken by other
checkpoints) is waited out with backoff on the same socket, within the checkpoint's deadline. flush()
waits for every ack and raises MergerError for failures; close() reports them and raises only when asked.
"""
import logging
import os
import sys
import threading
import time
import uuid

import numpy as np
import zmq

from . import _xxh3
from . import wsm_pb2 as pb
from .delivery import DeliveryQueue, MergerError, Policy

log = logging.getLogger("wsm_client")

PROTOCOL_VERSION = 1
# A Hello's metadata, keys and values together, at most (merger/engine/model_metadata.h).
MAX_METADATA_BYTES, MAX_METADATA_KEYS, MAX_METADATA_KEY_BYTES = 1 << 20, 256, 4096
# Waits between tries of a checkpoint refused as OVER_BUDGET (seconds): doubling, capped.
_FIRST_BUDGET_WAIT, _LONGEST_BUDGET_WAIT = 0.1, 2.0

_NUMPY_DTYPES = {
    np.dtype("float32"): "f32", np.dtype("float16"): "f16", np.dtype("float64"): "f64",
    np.dtype("int8"): "i8", np.dtype("int16"): "i16", np.dtype("int32"): "i32", np.dtype("int64"): "i64",
    np.dtype("uint8"): "u8", np.dtype("uint16"): "u16", np.dtype("uint32"): "u32", np.dtype("uint64"): "u64",
    np.dtype("bool"): "bool",
}


def _checked_metadata(metadata):
    """The model metadata as a dict of str -> str, checked as the merger checks it (it would refuse
    the Hello, failing every checkpoint): no wsm.* key (provenance is the merger's), at most 256 keys
    and 1 MiB."""
    out = dict(metadata or {})
    if len(out) > MAX_METADATA_KEYS:
        raise ValueError(f"metadata has {len(out)} keys, over the merger's limit of {MAX_METADATA_KEYS}")
    size = 0
    for key, value in out.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata {key!r}: keys and values must be str (e.g. json.dumps of a config)")
        if not key or key.startswith("wsm.") or key in ("total_size", "format"):
            raise ValueError(f"metadata key {key!r} is reserved (wsm.* keys are the merger's provenance; "
                             "total_size and format are the files' own)")
        if len(key.encode()) > MAX_METADATA_KEY_BYTES:
            raise ValueError(f"metadata key {key[:64]!r}... is over the merger's limit of {MAX_METADATA_KEY_BYTES} bytes per key")
        if "\0" in key or "\0" in value:
            raise ValueError(f"metadata {key!r}: keys and values must not contain NUL characters")
        size += len(key.encode()) + len(value.encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata of {size} bytes exceeds the merger's limit of {MAX_METADATA_BYTES} bytes")
    return out


class _Aborted(Exception):
    """close() gave up waiting: the sender stops what it is doing."""


def _to_host(name, value):
    """(dtype name, shape, contiguous numpy copy) for a numpy array or a torch tensor."""
    torch = sys.modules.get("torch")  # a torch tensor means torch is imported; never import it here (slow)
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach()
        if t.dtype == torch.bfloat16:
            arr = t.to("cpu", copy=True).contiguous().view(torch.int16).numpy()
            return "bf16", tuple(t.shape), arr
        arr = t.to("cpu", copy=True).contiguous().numpy()
        return _dtype_name(name, arr.dtype), tuple(t.shape), arr
    arr = np.array(value, copy=True, order="C")
    return _dtype_name(name, arr.dtype), arr.shape, arr


def _dtype_name(name, dtype):
    try:
        return _NUMPY_DTYPES[np.dtype(dtype).newbyteorder("=")]
    except KeyError:
        raise TypeError(f"tensor {name!r}: dtype {dtype} is not supported by wsm") from None


class _Snapshot:
    __slots__ = ("step", "tokens", "lr", "tensors", "nbytes", "deadline")

    def __init__(self, step, tokens, lr, tensors):
        self.step, self.tokens, self.lr = int(step), int(tokens), float(lr)
        self.tensors = tensors  # [(name, dtype, shape, uint8 view)]
        self.nbytes = sum(t[3].nbytes for t in tensors)

    def manifest(self):
        return [(n, d, tuple(int(x) for x in s)) for n, d, s, _ in self.tensors]


class MergerClient:
    """Streams checkpoints to a merger. Three lines in a PyTorch loop:

        merger = MergerClient("tcp://127.0.0.1:5555", run_id="gpt")
        merger.send_checkpoint(step, tokens, lr, model.state_dict())   # every N steps
        merger.close()

    policy: what an outage does (delivery.py): "drop-oldest" (default; never blocks), "wait" (keeps
    every checkpoint, blocks when queue_bytes are queued), "fail-fast" (no retries; the next call raises).
    metadata: the model's metadata, str -> str (e.g. {"hf.config": model.config.to_json_string()}),
    written by the merger into every merged output beside its provenance; the same for every client
    (and rank) of a run.
    """

    def __init__(self, endpoint="tcp://127.0.0.1:5555", run_id="run", chunk_bytes=4 << 20, queue_bytes=1 << 30,
                 reconnect_timeout_ms=30000, stall_timeout_ms=5000, curve_server_key=None, curve_public_key=None,
                 curve_secret_key=None, policy="drop-oldest", metadata=None):
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be > 0")
        self.metadata = _checked_metadata(metadata)
        self.endpoint, self.run_id = endpoint, run_id
        self.chunk_bytes = int(chunk_bytes)
        self.reconnect_timeout_ms, self.stall_timeout_ms = reconnect_timeout_ms, stall_timeout_ms
        self._curve = (curve_server_key, curve_public_key, curve_secret_key) if curve_server_key else None
        self._ctx = zmq.Context()
        self._queue = DeliveryQueue(policy, queue_bytes, reconnect_timeout_ms / 1000)
        self.policy = self._queue.policy
        self._abort = threading.Event()
        self._report = None
        self._watcher = None
        # Sender-thread state.
        self._sock = None
        self._session_manifest = None
        self._credit = 0
        self._max_chunk = 0
        self._down_since = None  # monotonic time of the first failed attempt of the current outage
        self._thread = threading.Thread(target=self._run, name="wsm-merger-client", daemon=True)
        self._thread.start()

    @property
    def stats(self):
        """Counters: queued, acked, failed, dropped, queue_waits, resends, bytes_sent."""
        return dict(self._queue.stats)

    # ---- trainer side ------------------------------------------------------------------------
    def send_checkpoint(self, step, tokens, lr, tensors):
        """tensors: a dict (e.g. a torch state_dict) or pairs of name -> numpy array / torch tensor.
        Returns once the tensors are copied; raises MergerError only under policy fail-fast."""
        items = tensors.items() if hasattr(tensors, "items") else tensors
        snap = []
        for name, value in items:
            dtype, shape, arr = _to_host(name, value)
            snap.append((str(name), dtype, shape, arr.reshape(-1).view(np.uint8)))
        self._queue.put(_Snapshot(step, tokens, lr, snap))

    def flush(self, timeout_s=None):
        """Waits for every queued checkpoint to be acknowledged or to fail; raises MergerError for
        the failures not reported before. Returns False when timeout_s passed first."""
        return self._queue.flush(timeout_s)

    def close(self, timeout_s=None, raise_errors=False):
        """Delivers what is queued (at most timeout_s; default reconnect + stall timeout), stops the
        sender and returns a report: {acked, failed, dropped, undelivered, errors}. Failures are
        logged; MergerError is raised only with raise_errors=True."""
        if self._report is None:
            if timeout_s is None:
                timeout_s = (self.reconnect_timeout_ms + self.stall_timeout_ms) / 1000
            undelivered = []
            try:
                self._queue.flush(timeout_s)
            except MergerError:
                pass  # in the report below
            if self._queue.pending_steps():
                undelivered = self._queue.pending_steps()
                self._abort.set()
                self._queue.fail_waiting(f"not delivered: close() gave up after {timeout_s:g} s")
            self._queue.close()
            self._thread.join()
            self._ctx.term()
            st = self._queue.stats
            self._report = {"acked": st["acked"], "failed": st["failed"], "dropped": st["dropped"],
                            "undelivered": undelivered, "errors": list(self._queue.failures)}
            if self._report["errors"]:
                log.warning("merger client closed: %d acknowledged, %d failed, %d dropped; first: %s",
                            st["acked"], st["failed"], st["dropped"], self._report["errors"][0])
        if raise_errors and self._report["errors"]:
            raise MergerError("merger client: " + "; ".join(self._report["errors"]))
        return self._report

    def wait_for_output(self, timeout_s=60.0):
        """This run's outputs written since the last call (the first call: since the daemon started),
        waiting up to timeout_s for one; [] when none came. Records as in index.json (outputs.py)."""
        from .outputs import OutputWatcher

        if self._watcher is None:
            self._watcher = OutputWatcher(self.endpoint, self.run_id)
        return self._watcher.wait(timeout_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- sender thread -----------------------------------------------------------------------
    def _new_socket(self):
        if self._sock is not None:
            self._sock.close(linger=0)
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.ROUTING_ID, b"wsm-py-" + uuid.uuid4().hex[:12].encode())
        if self.endpoint.startswith("tcp://["):  # tcp://[::1]:PORT
            s.setsockopt(zmq.IPV6, 1)
        if self._curve:
            server, public, secret = self._curve
            s.curve_serverkey, s.curve_publickey, s.curve_secretkey = (k.encode() if isinstance(k, str) else k
                                                                      for k in (server, public, secret))
        s.connect(self.endpoint)
        self._sock, self._session_manifest, self._credit = s, None, 0

    def _send(self, body_name, payload=None, **fields):
        env = pb.Envelope(version=PROTOCOL_VERSION)
        getattr(env, body_name).SetInParent()
        for k, v in fields.items():
            setattr(getattr(env, body_name), k, v)
        if payload is None:
            self._sock.send(env.SerializeToString())
        else:
            self._sock.send(env.SerializeToString(), zmq.SNDMORE)
            self._sock.send(payload, copy=False)

    def _recv(self, timeout_ms):
        """The next message within timeout_ms, or None; polls in slices so that close() can abort."""
        end = time.monotonic() + max(0, timeout_ms) / 1000
        while True:
            if self._abort.is_set():
                raise _Aborted()
            left_ms = (end - time.monotonic()) * 1000
            if self._sock.poll(int(min(100, max(0, left_ms)))):
                break
            if left_ms <= 0:
                return None
        frames = self._sock.recv_multipart()
        env = pb.Envelope()
        try:
            env.ParseFromString(frames[0])
        except Exception:  # noqa: BLE001 - a bad frame from the merger is logged and skipped
            log.warning("merger client: malformed message from the merger")
            return None
        return env

    def _hello(self, snap):
        env = pb.Envelope(version=PROTOCOL_VERSION)
        h = env.hello
        h.protocol_version = PROTOCOL_VERSION
        h.run_id = self.run_id
        h.client = "wsm-python/0.1"
        h.metadata.update(self.metadata)
        for name, dtype, shape in snap.manifest():
            h.manifest.add(name=name, dtype=dtype, shape=list(shape))
        self._fill_hello(h, snap)
        self._sock.send(env.SerializeToString())
        deadline = time.monotonic() + self.stall_timeout_ms / 1000
        while True:
            m = self._recv((deadline - time.monotonic()) * 1000)
            if m is None:
                return False
            kind = m.WhichOneof("body")
            if kind == "welcome":
                self._session_manifest = snap.manifest()
                self._down_since = None
                self._credit = m.welcome.credit
                self._max_chunk = m.welcome.max_chunk_bytes
                return True
            if kind == "error":
                raise MergerError("merger refused hello: " + m.error.message)

    def _fill_hello(self, hello, snap):
        """Hook for sharded senders (sharded.py): the group and the slices of the manifest."""

    def _on_message(self, m, snap, resend):
        """None to go on, else 'acked' / 'retry' / ('rejected', message)."""
        kind = m.WhichOneof("body")
        if kind == "credit":
            self._credit += m.credit.grant
        elif kind == "error":
            e = m.error
            if e.code == pb.NO_SESSION:
                return "retry"
            if e.step != snap.step:
                log.warning("merger client: late error for step %d: %s", e.step, e.message)
                return None
            # A resend of a step that got into the window before the break is acknowledged by the
            # daemon (same bytes); daemons before that answered DUPLICATE_STEP, kept as delivered.
            if e.code == pb.DUPLICATE_STEP and resend:
                return "acked"
            if e.code == pb.TIMEOUT:
                return "retry"
            if e.code == pb.OVER_BUDGET:
                return ("over_budget", f"merger rejected step {snap.step}: {e.message}")
            return ("rejected", f"merger rejected step {snap.step}: {e.message}")
        elif kind == "ack" and m.ack.step == snap.step:
            return "acked"
        return None

    def _attempt(self, snap, resend):
        if self._sock is None:
            self._new_socket()
        if self._session_manifest != snap.manifest() and not self._hello(snap):
            return "retry"
        self._send("begin", step=snap.step, tokens=snap.tokens, lr=snap.lr)
        whole = _xxh3.Stream()  # over the chunk checksums, 8 little-endian bytes each
        chunk = self.chunk_bytes if not self._max_chunk else min(self.chunk_bytes, self._max_chunk)
        total = 0
        for name, _dtype, _shape, data in snap.tensors:
            for off in range(0, data.nbytes, chunk):
                piece = memoryview(data[off:off + chunk])
                while True:
                    m = self._recv(0 if self._credit > 0 else self.stall_timeout_ms)
                    if m is None:
                        if self._credit > 0:
                            break
                        log.warning("merger client: no credit from the merger for %d ms", self.stall_timeout_ms)
                        return "retry"
                    r = self._on_message(m, snap, resend)
                    if r is not None:
                        return r
                env = pb.Envelope(version=PROTOCOL_VERSION)
                c = env.chunk
                c.step, c.name, c.offset, c.length, c.checksum = snap.step, name, off, piece.nbytes, _xxh3.checksum(piece)
                whole.update(c.checksum.to_bytes(8, "little"))
                self._sock.send(env.SerializeToString(), zmq.SNDMORE)
                self._sock.send(piece, copy=False)  # zero-copy: pyzmq holds the view until sent
                self._credit -= 1
                total += piece.nbytes
                self._queue.count("bytes_sent", piece.nbytes)
        self._send("end", step=snap.step, total_bytes=total, checksum=whole.digest())
        while True:
            m = self._recv(self.stall_timeout_ms)
            if m is None:
                log.warning("merger client: no ack for step %d after %d ms", snap.step, self.stall_timeout_ms)
                return "retry"
            r = self._on_message(m, snap, resend)
            if r is not None:
                return r

    def _drop_socket(self):
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def _deliver(self, snap):
        """Sends one checkpoint until it is acknowledged (None) or fails (the message). The
        checkpoint's deadline counts from when it was queued; while the merger is down, checkpoints
        already past theirs fail at once, so an outage costs reconnect_timeout once, not per checkpoint."""
        resend, backoff, budget_wait = False, 0.05, _FIRST_BUDGET_WAIT
        while True:
            if self._down_since is not None and snap.deadline is not None and time.monotonic() >= snap.deadline:
                self._drop_socket()
                down = time.monotonic() - self._down_since
                return (f"step {snap.step} not delivered: merger at {self.endpoint} unreachable for {down:.1f} s "
                        f"(reconnect_timeout {self.reconnect_timeout_ms} ms, policy {self.policy.value})")
            try:
                r = self._attempt(snap, resend)
            except MergerError as e:
                self._drop_socket()
                return f"step {snap.step}: {e}"
            if r == "acked":
                return None
            if isinstance(r, tuple) and r[0] == "over_budget" and self.policy is not Policy.FAIL_FAST:
                # The merger frees memory as other checkpoints complete or leave the window: the
                # same socket tries again (the merger dropped what it had of this step).
                left = None if snap.deadline is None else snap.deadline - time.monotonic()
                if left is not None and left <= 0:
                    return f"{r[1]} (still over the merger's memory budget after {self.reconnect_timeout_ms} ms)"
                pause = budget_wait if left is None else min(budget_wait, left)
                log.warning("merger client: step %d does not fit the merger's memory budget now; trying again in %d ms",
                            snap.step, pause * 1000)
                if self._abort.wait(pause):
                    raise _Aborted()
                budget_wait = min(budget_wait * 2, _LONGEST_BUDGET_WAIT)
                self._queue.count("budget_waits")
                continue
            if isinstance(r, tuple):
                return r[1]
            if self._down_since is None:
                self._down_since = time.monotonic()
            if self.policy is Policy.FAIL_FAST:
                self._drop_socket()
                return f"step {snap.step} not delivered at the first try (merger at {self.endpoint}; policy fail-fast)"
            if snap.deadline is not None and time.monotonic() >= snap.deadline:
                continue  # reported above
            log.warning("merger client: reconnecting to %s to resend step %d", self.endpoint, snap.step)
            if self._abort.wait(backoff):
                raise _Aborted()
            backoff = min(1.0, backoff * 2)
            self._new_socket()
            resend = True
            self._queue.count("resends")

    def _run(self):
        while True:
            snap = self._queue.take()
            if snap is None:
                break
            try:
                error = self._deliver(snap)
            except _Aborted:
                error = f"step {snap.step}: not delivered: close() gave up"
                self._drop_socket()
            except Exception as e:  # noqa: BLE001 - the thread must survive to report
                error = f"step {snap.step}: {e!r}"
                self._drop_socket()
            self._queue.done(snap, error)
        if self._sock is not None:
            if self._session_manifest is not None:
                try:
                    self._send("bye")
                except zmq.ZMQError:
                    pass
            self._drop_socket()


def _request(endpoint, fill, timeout_ms):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(endpoint)
        env = pb.Envelope(version=PROTOCOL_VERSION)
        fill(env)
        s.send(env.SerializeToString())
        if not s.poll(timeout_ms):
            raise MergerError(f"no reply from {endpoint} within {timeout_ms} ms")
        reply = pb.Envelope()
        reply.ParseFromString(s.recv_multipart()[0])
        if reply.WhichOneof("body") == "error":
            raise MergerError(f"merger at {endpoint}: {reply.error.message}")
        return reply
    finally:
        s.close()


def message_to_dict(message):
    """A protobuf message as plain Python values: every field present (defaults included), integers as
    int (64-bit ones too), enums by name, repeated fields as lists. Independent of the protobuf
    release: json_format.MessageToDict renamed its option for default fields in 5.26
    (including_default_value_fields -> always_print_fields_with_no_presence), which broke status()."""
    out = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.type == field.TYPE_MESSAGE:
            convert = message_to_dict
        elif field.type == field.TYPE_ENUM:
            convert = (lambda v, e=field.enum_type: e.values_by_number[v].name if v in e.values_by_number else v)
        else:
            convert = (lambda v: v)
        repeated = getattr(field, "is_repeated", None)  # protobuf >= 6.31; .label is deprecated there
        repeated = repeated if repeated is not None else field.label == field.LABEL_REPEATED
        out[field.name] = [convert(v) for v in value] if repeated else convert(value)
    return out


def status(endpoint="tcp://127.0.0.1:5555", timeout_ms=3000):
    """The merger's StatusReply as a dict (field names as in protocol/wire/wsm.proto; int64 fields as int)."""
    reply = _request(endpoint, lambda e: e.status_request.SetInParent(), timeout_ms)
    return message_to_dict(reply.status_reply)


def merge_now(endpoint, run_id, shape, window, dtype="", timeout_ms=600000):
    """Ask for one merged checkpoint from the current window; returns {path, source_steps, weights}."""
    request_id = int.from_bytes(os.urandom(6), "little") or 1

    def fill(e):
        e.merge_request.request_id = request_id
        e.merge_request.run_id = run_id
        e.merge_request.shape = shape
        e.merge_request.window = str(window)
        e.merge_request.dtype = dtype

    r = _request(endpoint, fill, timeout_ms).merge_reply
    return {"path": r.path, "source_steps": list(r.source_steps), "weights": list(r.weights)}
