"""The Python client of `wsm serve`: the same calls and behaviour as wsm/client/client.h.

send_checkpoint() snapshots the tensors (one host copy) and returns; a background thread streams
the snapshots in order over a ZeroMQ DEALER: Hello, CheckpointBegin, chunks within the merger's
credit (payload frames sent without copies), CheckpointEnd, then waits for the Ack. The queue is
bounded by queue_bytes; when full, send_checkpoint waits for room and logs a warning. A NO_SESSION
error or a silent merger (stall_timeout_ms) opens a new socket and resends the checkpoint, until
reconnect_timeout_ms; OVER_BUDGET (the merger's memory is taken by other checkpoints) is waited out
with backoff on the same socket, within the same time. flush() waits for every ack and raises
MergerError for failures.
"""
import collections
import logging
import os
import threading
import time
import uuid

import numpy as np
import zmq

from . import _xxh3
from ._proto import pb

log = logging.getLogger("wsm_client")

PROTOCOL_VERSION = 1
# Waits between tries of a checkpoint refused as OVER_BUDGET (seconds): doubling, capped.
_FIRST_BUDGET_WAIT, _LONGEST_BUDGET_WAIT = 0.1, 2.0

_NUMPY_DTYPES = {
    np.dtype("float32"): "f32", np.dtype("float16"): "f16", np.dtype("float64"): "f64",
    np.dtype("int8"): "i8", np.dtype("int16"): "i16", np.dtype("int32"): "i32", np.dtype("int64"): "i64",
    np.dtype("uint8"): "u8", np.dtype("uint16"): "u16", np.dtype("uint32"): "u32", np.dtype("uint64"): "u64",
    np.dtype("bool"): "bool",
}


class MergerError(RuntimeError):
    """A checkpoint the merger rejected, or could not be reached for."""


def _to_host(name, value):
    """(dtype name, shape, contiguous numpy copy) for a numpy array or a torch tensor."""
    try:
        import torch  # optional

        if isinstance(value, torch.Tensor):
            t = value.detach()
            if t.dtype == torch.bfloat16:
                arr = t.to("cpu", copy=True).contiguous().view(torch.int16).numpy()
                return "bf16", tuple(t.shape), arr
            arr = t.to("cpu", copy=True).contiguous().numpy()
            return _dtype_name(name, arr.dtype), tuple(t.shape), arr
    except ImportError:
        pass
    arr = np.array(value, copy=True, order="C")
    return _dtype_name(name, arr.dtype), arr.shape, arr


def _dtype_name(name, dtype):
    try:
        return _NUMPY_DTYPES[np.dtype(dtype).newbyteorder("=")]
    except KeyError:
        raise TypeError(f"tensor {name!r}: dtype {dtype} is not supported by wsm") from None


class _Snapshot:
    __slots__ = ("step", "tokens", "lr", "tensors", "nbytes")

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
    """

    def __init__(self, endpoint="tcp://127.0.0.1:5555", run_id="run", chunk_bytes=4 << 20, queue_bytes=1 << 30,
                 reconnect_timeout_ms=30000, stall_timeout_ms=5000, curve_server_key=None, curve_public_key=None,
                 curve_secret_key=None):
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be > 0")
        self.endpoint, self.run_id = endpoint, run_id
        self.chunk_bytes, self.queue_bytes = int(chunk_bytes), int(queue_bytes)
        self.reconnect_timeout_ms, self.stall_timeout_ms = reconnect_timeout_ms, stall_timeout_ms
        self._curve = (curve_server_key, curve_public_key, curve_secret_key) if curve_server_key else None
        self._ctx = zmq.Context()
        self._cv = threading.Condition()
        self._queue = collections.deque()
        self._queued_bytes = 0
        self._in_flight = False
        self._closing = False
        self._errors = []
        self.stats = {"acked": 0, "failed": 0, "bytes_sent": 0, "resends": 0, "queue_waits": 0, "budget_waits": 0}
        # Sender-thread state.
        self._sock = None
        self._session_manifest = None
        self._credit = 0
        self._max_chunk = 0
        self._thread = threading.Thread(target=self._run, name="wsm-merger-client", daemon=True)
        self._thread.start()

    # ---- trainer side ------------------------------------------------------------------------
    def send_checkpoint(self, step, tokens, lr, tensors):
        """tensors: a dict (e.g. a torch state_dict) or pairs of name -> numpy array / torch tensor."""
        items = tensors.items() if hasattr(tensors, "items") else tensors
        snap = []
        for name, value in items:
            dtype, shape, arr = _to_host(name, value)
            snap.append((str(name), dtype, shape, arr.reshape(-1).view(np.uint8)))
        s = _Snapshot(step, tokens, lr, snap)
        with self._cv:
            if self._closing:
                raise MergerError("send_checkpoint: the merger client is closed")
            if self._queue and self._queued_bytes + s.nbytes > self.queue_bytes:
                log.warning("merger client: %d bytes queued (queue_bytes %d); step %d waits for room",
                            self._queued_bytes, self.queue_bytes, s.step)
                self.stats["queue_waits"] += 1
                self._cv.wait_for(lambda: not self._queue or self._queued_bytes + s.nbytes <= self.queue_bytes)
            self._queue.append(s)
            self._queued_bytes += s.nbytes
            self._cv.notify_all()

    def flush(self):
        with self._cv:
            self._cv.wait_for(lambda: not self._queue and not self._in_flight)
            errors, self._errors = self._errors, []
        if errors:
            raise MergerError("merger client: " + "; ".join(errors))

    def close(self):
        if not self._thread.is_alive():
            return
        try:
            self.flush()
        finally:
            with self._cv:
                self._closing = True
                self._cv.notify_all()
            self._thread.join()
            self._ctx.term()

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
        if not self._sock.poll(max(0, int(timeout_ms))):
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
            # DUPLICATE_STEP means the step is in the window (it got there before the break); a step
            # still arriving from the abandoned socket is taken over by the resend instead.
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
                self.stats["bytes_sent"] += piece.nbytes
        self._send("end", step=snap.step, total_bytes=total, checksum=whole.digest())
        while True:
            m = self._recv(self.stall_timeout_ms)
            if m is None:
                log.warning("merger client: no ack for step %d after %d ms", snap.step, self.stall_timeout_ms)
                return "retry"
            r = self._on_message(m, snap, resend)
            if r is not None:
                return r

    def _fail(self, message):
        log.error("merger client: %s", message)
        with self._cv:
            self._errors.append(message)
            self.stats["failed"] += 1

    def _send_one(self, snap):
        deadline = time.monotonic() + self.reconnect_timeout_ms / 1000
        resend = False
        budget_wait = _FIRST_BUDGET_WAIT
        while True:
            try:
                r = self._attempt(snap, resend)
            except MergerError as e:
                self._fail(f"step {snap.step}: {e}")
                self._sock.close(linger=0)
                self._sock = None
                return
            if r == "acked":
                with self._cv:
                    self.stats["acked"] += 1
                return
            if isinstance(r, tuple) and r[0] == "over_budget":
                # The merger frees memory as other checkpoints complete or leave the window: the
                # same socket tries again (the merger dropped what it had of this step).
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail(f"{r[1]} (still over the merger's memory budget after {self.reconnect_timeout_ms} ms)")
                    return
                pause = min(budget_wait, left)
                log.warning("merger client: step %d does not fit the merger's memory budget now; trying again in %d ms",
                            snap.step, pause * 1000)
                time.sleep(pause)
                budget_wait = min(budget_wait * 2, _LONGEST_BUDGET_WAIT)
                with self._cv:
                    self.stats["budget_waits"] += 1
                continue
            if isinstance(r, tuple):
                self._fail(r[1])
                return
            if time.monotonic() >= deadline:
                self._fail(f"merger at {self.endpoint} unreachable for {self.reconnect_timeout_ms} ms; "
                           f"step {snap.step} not delivered")
                self._sock.close(linger=0)
                self._sock = None
                return
            log.warning("merger client: reconnecting to %s to resend step %d", self.endpoint, snap.step)
            self._new_socket()
            resend = True
            with self._cv:
                self.stats["resends"] += 1

    def _run(self):
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closing or self._queue)
                if not self._queue:
                    break
                snap = self._queue[0]
                self._in_flight = True
            try:
                self._send_one(snap)
            except Exception as e:  # noqa: BLE001 - the thread must survive to report
                self._fail(f"step {snap.step}: {e!r}")
            with self._cv:
                self._queue.popleft()
                self._queued_bytes -= snap.nbytes
                self._in_flight = False
                self._cv.notify_all()
        if self._sock is not None:
            if self._session_manifest is not None:
                try:
                    self._send("bye")
                except zmq.ZMQError:
                    pass
            self._sock.close(linger=0)
            self._sock = None


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


def status(endpoint="tcp://127.0.0.1:5555", timeout_ms=3000):
    """The merger's StatusReply as a dict (field names as in protocol/wire/wsm.proto)."""
    from google.protobuf.json_format import MessageToDict

    reply = _request(endpoint, lambda e: e.status_request.SetInParent(), timeout_ms)
    return MessageToDict(reply.status_reply, preserving_proto_field_name=True, including_default_value_fields=True)


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
