"""A merger outage under each policy (wait, drop-oldest, fail-fast) against a real `wsm serve` on
127.0.0.1 that is absent or killed: send_checkpoint never stalls training (except `wait` on a full
queue, by design), failures are reported, close() is bounded and raises only when asked."""
import threading
import time
import unittest

import wsm_client
from daemon import Daemon, free_port, model, wait_until

STALL_MS, RECONNECT_MS = 300, 1500
NBYTES = sum(v.nbytes for v in model(0).values())


def client(endpoint, policy, **kw):
    kw.setdefault("stall_timeout_ms", STALL_MS)
    kw.setdefault("reconnect_timeout_ms", RECONNECT_MS)
    return wsm_client.MergerClient(endpoint, run_id="outage", policy=policy, **kw)


def timed(f, *args, **kw):
    t0 = time.monotonic()
    result = f(*args, **kw)
    return result, time.monotonic() - t0


class AbsentMerger(unittest.TestCase):
    def setUp(self):
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there

    def test_policy_names_are_parsed_once(self):
        self.assertIs(wsm_client.Policy.parse("drop_oldest"), wsm_client.Policy.DROP_OLDEST)
        with self.assertRaisesRegex(ValueError, "wait, drop-oldest, fail-fast"):
            wsm_client.Policy.parse("retry")

    def test_drop_oldest_never_blocks_and_drops_the_oldest(self):
        c = client(self.endpoint, "drop-oldest", queue_bytes=2 * NBYTES)
        waits = [timed(c.send_checkpoint, s, s, 1e-3, model(s))[1] for s in range(0, 600, 100)]
        self.assertLess(max(waits), 0.2, waits)
        # The queue holds 2 checkpoints (one in flight): each new one pushed out the oldest waiting.
        self.assertEqual(c.stats["dropped"], 4, c.stats)
        report, took = timed(c.close)
        self.assertLess(took, (RECONNECT_MS + 2 * STALL_MS) / 1000 + 1.0)
        self.assertEqual(report["acked"], 0)
        self.assertEqual(report["failed"] + report["dropped"], 6, report)
        self.assertTrue(any("unreachable" in e for e in report["errors"]), report)
        dropped = [int(e.split()[1]) for e in report["errors"] if "dropped" in e]
        self.assertEqual(dropped, sorted(dropped), report)  # oldest first
        self.assertEqual(len(dropped), 4, report)
        self.assertNotIn(500, dropped)  # the newest is kept

    def test_queued_checkpoints_fail_together_not_one_timeout_each(self):
        c = client(self.endpoint, "drop-oldest")
        for s in range(0, 800, 100):
            c.send_checkpoint(s, s, 1e-3, model(s))
        report, took = timed(c.close, timeout_s=30)
        # 8 checkpoints, one outage: about one reconnect_timeout in all (in turn it would be 8 x 1.5 s).
        self.assertLess(took, (RECONNECT_MS + 2 * STALL_MS) / 1000 + 1.0, report)
        self.assertEqual(report["failed"], 8, report)
        self.assertEqual(report["undelivered"], [])

    def test_fail_fast_fails_at_the_first_try_and_raises_on_the_next_call(self):
        c = client(self.endpoint, "fail-fast")
        _, took = timed(c.send_checkpoint, 0, 0, 1e-3, model(0))
        self.assertLess(took, 0.2)
        t0 = time.monotonic()
        with self.assertRaisesRegex(wsm_client.MergerError, "first try"):
            c.flush(timeout_s=10)
        self.assertLess(time.monotonic() - t0, STALL_MS / 1000 + 1.0)
        c.send_checkpoint(100, 100, 1e-3, model(100))
        self.assertTrue(wait_until(lambda: c.stats["failed"] == 2, 5))
        with self.assertRaises(wsm_client.MergerError):
            c.send_checkpoint(200, 200, 1e-3, model(200))
        report = c.close()  # reports, does not raise
        self.assertEqual(report["failed"], 2, report)

    def test_close_raises_only_when_asked(self):
        c = client(self.endpoint, "drop-oldest", reconnect_timeout_ms=400)
        c.send_checkpoint(0, 0, 1e-3, model(0))
        with self.assertRaisesRegex(wsm_client.MergerError, "step 0"):
            c.close(raise_errors=True)
        self.assertEqual(c.close()["failed"], 1)  # closed already: the same report

    def test_wait_is_bounded_by_close_timeout(self):
        c = client(self.endpoint, "wait")
        c.send_checkpoint(0, 0, 1e-3, model(0))
        c.send_checkpoint(100, 100, 1e-3, model(100))
        time.sleep(RECONNECT_MS / 1000 + 0.3)  # past reconnect_timeout: `wait` still holds both
        self.assertEqual(c.stats["failed"], 0)
        report, took = timed(c.close, timeout_s=1.0)
        self.assertLess(took, 1.0 + STALL_MS / 1000 + 1.0)
        self.assertEqual(sorted(report["undelivered"]), [0, 100], report)
        self.assertEqual(report["failed"], 2, report)


class KilledMerger(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon()

    def tearDown(self):
        self.daemon.cleanup()

    def restart(self):
        self.daemon = Daemon(port=self.daemon.port, out=self.daemon.out)

    def test_wait_keeps_every_checkpoint_across_a_restart(self):
        c = client(self.daemon.endpoint, "wait", queue_bytes=NBYTES)
        c.send_checkpoint(0, 0, 1e-3, model(0))
        self.assertTrue(c.flush(timeout_s=10))
        self.daemon.kill()
        c.send_checkpoint(100, 100, 1e-3, model(100))  # in flight, retried
        blocked = threading.Thread(target=c.send_checkpoint, args=(200, 200, 1e-3, model(200)))
        blocked.start()  # the queue is full: `wait` blocks the trainer rather than drop it
        time.sleep(RECONNECT_MS / 1000 + 0.3)
        self.assertTrue(blocked.is_alive())
        self.restart()
        blocked.join(15)
        self.assertFalse(blocked.is_alive())
        self.assertTrue(c.flush(timeout_s=15))
        report = c.close(raise_errors=True)
        self.assertEqual(report["acked"], 3, report)
        window = [w["step"] for w in wsm_client.status(self.daemon.endpoint)["window"]]
        self.assertEqual(window, [100, 200])  # the restarted daemon (no --store) got the two resent

    def test_drop_oldest_recovers_when_the_merger_returns(self):
        c = client(self.daemon.endpoint, "drop-oldest", reconnect_timeout_ms=10000)
        self.daemon.kill()
        waits = [timed(c.send_checkpoint, s, s, 1e-3, model(s))[1] for s in (0, 100)]
        self.assertLess(max(waits), 0.2)
        time.sleep(0.5)
        self.restart()
        self.assertTrue(c.flush(timeout_s=15))
        self.assertEqual(c.close()["acked"], 2)

    def test_fail_fast_after_a_kill(self):
        c = client(self.daemon.endpoint, "fail-fast")
        c.send_checkpoint(0, 0, 1e-3, model(0))
        self.assertTrue(c.flush(timeout_s=10))
        self.daemon.kill()
        c.send_checkpoint(100, 100, 1e-3, model(100))
        with self.assertRaisesRegex(wsm_client.MergerError, "step 100"):
            c.flush(timeout_s=10)
        report = c.close()
        self.assertEqual((report["acked"], report["failed"]), (1, 1), report)


if __name__ == "__main__":
    unittest.main()
