"""What a MergerClient does with its checkpoints while the merger is slow or gone: the policy and
the bounded queue the trainer and the sender thread share (docs/python-client.md, "Outages").

Policies (one per client, parsed once by Policy.parse):
- wait:        keep every checkpoint and retry until the merger is back; when the queue is full,
               send_checkpoint() blocks (training waits rather than lose a checkpoint).
- drop-oldest: never block: when the queue is full the oldest waiting checkpoint is dropped (and
               reported); a checkpoint still undelivered reconnect_timeout after it was queued fails.
- fail-fast:   never block, never retry: a checkpoint the merger does not take at the first try
               fails, and the next send_checkpoint() or flush() raises MergerError.

Deadlines run from the moment each checkpoint is queued, so the checkpoints waiting out an outage
run out together, not one reconnect_timeout after another.
"""
import collections
import enum
import logging
import threading
import time

log = logging.getLogger("wsm_client")


class MergerError(RuntimeError):
    """A checkpoint the merger rejected, or could not be reached for."""


class Policy(enum.Enum):
    WAIT = "wait"
    DROP_OLDEST = "drop-oldest"
    FAIL_FAST = "fail-fast"

    @classmethod
    def parse(cls, value):
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).replace("_", "-").lower())
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise ValueError(f"merger client: unknown outage policy {value!r} (choose one of: {choices})") from None


class DeliveryQueue:
    """Checkpoints waiting for the sender thread, bounded by bytes, with per-checkpoint deadlines.

    Items need `nbytes` and `step`; the queue sets `deadline` (time.monotonic() seconds, or None).
    """

    def __init__(self, policy, queue_bytes, reconnect_timeout_s):
        self.policy = Policy.parse(policy)
        self.queue_bytes = int(queue_bytes)
        self.reconnect_timeout_s = float(reconnect_timeout_s)
        self._cv = threading.Condition()
        self._waiting = collections.deque()  # not yet taken by the sender
        self._in_flight = None
        self._bytes = 0
        self._closing = False
        self._errors = []   # not yet raised by flush()/send_checkpoint()
        self.stats = {"queued": 0, "acked": 0, "failed": 0, "dropped": 0, "queue_waits": 0, "resends": 0,
                      "bytes_sent": 0, "budget_waits": 0}
        self.failures = []  # every failure message, for close()'s report

    # ---- trainer side ---------------------------------------------------------------------------
    def put(self, item):
        with self._cv:
            if self._closing:
                raise MergerError("send_checkpoint: the merger client is closed")
            if self.policy is Policy.FAIL_FAST:
                self._raise_errors_locked()
            if self._bytes and self._bytes + item.nbytes > self.queue_bytes:
                self._make_room_locked(item)
            item.deadline = None if self.policy is Policy.WAIT else time.monotonic() + self.reconnect_timeout_s
            self._waiting.append(item)
            self._bytes += item.nbytes
            self.stats["queued"] += 1
            self._cv.notify_all()

    def _make_room_locked(self, item):
        if self.policy is Policy.WAIT:
            log.warning("merger client: %d bytes queued (queue_bytes %d); step %d waits for room",
                        self._bytes, self.queue_bytes, item.step)
            self.stats["queue_waits"] += 1
            self._cv.wait_for(lambda: not self._bytes or self._bytes + item.nbytes <= self.queue_bytes)
            return
        if self.policy is Policy.FAIL_FAST:
            self._record_locked(f"step {item.step} refused: {self._bytes} bytes still queued (queue_bytes "
                                f"{self.queue_bytes}) and policy fail-fast", "failed")
            self._raise_errors_locked()
        while self._waiting and self._bytes + item.nbytes > self.queue_bytes:
            old = self._waiting.popleft()
            self._bytes -= old.nbytes
            self._record_locked(f"step {old.step} dropped undelivered to make room for step {item.step} "
                                f"(queue_bytes {self.queue_bytes}, policy drop-oldest)", "dropped")

    def _record_locked(self, message, kind):
        log.warning("merger client: %s", message)
        self._errors.append(message)
        self.failures.append(message)
        self.stats[kind] += 1

    def _raise_errors_locked(self):
        if self._errors:
            errors, self._errors = self._errors, []
            raise MergerError("merger client: " + "; ".join(errors))

    def flush(self, timeout_s=None):
        """Waits until nothing is queued or in flight; raises MergerError for what failed meanwhile.
        Returns False when timeout_s passed first."""
        with self._cv:
            done = self._cv.wait_for(lambda: not self._waiting and self._in_flight is None, timeout_s)
            self._raise_errors_locked()
            return done

    def pending_steps(self):
        with self._cv:
            steps = [self._in_flight.step] if self._in_flight is not None else []
            return steps + [i.step for i in self._waiting]

    # ---- sender side ------------------------------------------------------------------------------
    def take(self):
        """The next checkpoint to send (kept as in flight), or None once closing and empty."""
        with self._cv:
            self._cv.wait_for(lambda: self._closing or self._waiting)
            if not self._waiting:
                return None
            self._in_flight = self._waiting.popleft()
            return self._in_flight

    def done(self, item, error=None):
        """The sender finished with `item`: acknowledged (error None) or failed with a message."""
        with self._cv:
            if error is None:
                self.stats["acked"] += 1
            else:
                self._record_locked(error, "failed")
            self._bytes -= item.nbytes
            self._in_flight = None
            self._cv.notify_all()

    def fail_waiting(self, message):
        """Fails every waiting checkpoint at once (close() ran out of time)."""
        with self._cv:
            while self._waiting:
                item = self._waiting.popleft()
                self._bytes -= item.nbytes
                self._record_locked(f"step {item.step}: {message}", "failed")
            self._cv.notify_all()

    def count(self, key, n=1):
        with self._cv:
            self.stats[key] += n

    def close(self):
        with self._cv:
            self._closing = True
            self._cv.notify_all()
