"""Against a real `wsm serve`: wait_for_output learns of each new output as it is written (a long
poll, no file polling), and its record names a file whose values are the weighted mean the record
states; a resumed run re-sending steps the window holds is acknowledged when the bytes match."""
import json
import pathlib
import threading
import time
import unittest

import numpy as np

import wsm_client
from daemon import Daemon, model, wait_until


class Outputs(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon(emulate="linear:200", every=100)

    def tearDown(self):
        self.daemon.cleanup()

    def test_long_poll_returns_when_an_output_is_written(self):
        ep = self.daemon.endpoint
        watcher = wsm_client.OutputWatcher(ep, run_id="feed")
        t0 = time.monotonic()
        self.assertEqual(watcher.wait(timeout_s=0.5), [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        self.assertLess(time.monotonic() - t0, 3)

        got = {}
        waiter = threading.Thread(target=lambda: got.setdefault("records", watcher.wait(timeout_s=30)))
        waiter.start()
        with wsm_client.MergerClient(ep, run_id="feed") as c:
            for s in (0, 100):  # linear:200 is covered at step 100 (0 and 100 fill it): the first output
                c.send_checkpoint(s, s * 10, 1e-3, model(s))
            self.assertTrue(c.flush(timeout_s=20))
            acked = time.monotonic()
        waiter.join(30)
        self.assertFalse(waiter.is_alive())
        self.assertLess(time.monotonic() - acked, 10)
        records = got["records"]
        self.assertEqual([(r["run_id"], r["step"], r["seq"]) for r in records], [("feed", 100, 1)])
        rec = records[0]

        # The same record as index.json's, and the file holds what it says.
        index = json.loads((pathlib.Path(self.daemon.out) / "index.json").read_text())["outputs"]
        self.assertEqual([{k: v for k, v in rec.items() if k != "seq"}], index)
        self.assertTrue(set(rec["sources"]) <= {0, 100} and rec["sources"][-1] == 100, rec)
        self.assertAlmostEqual(sum(rec["weights"]), 1.0, places=12)
        merged = wsm_client.load_state_dict(rec["path"], framework="numpy")
        for name in ("layer.weight", "layer.bias"):
            ref = sum(w * model(s)[name].astype(np.float64) for s, w in zip(rec["sources"], rec["weights"]))
            np.testing.assert_allclose(merged[name], ref, rtol=0, atol=2e-6)
        np.testing.assert_array_equal(merged["step_counter"], [100])  # integers come from the newest

        # Nothing new: the next wait times out empty; other runs see nothing of this one.
        self.assertEqual(watcher.wait(timeout_s=0.3), [])
        other = wsm_client.wait_for_output(ep, after=0, run_id="other", timeout_s=0.3)
        self.assertEqual((other["outputs"], other["latest"]), ([], 1))
        everything = wsm_client.wait_for_output(ep, after=0, timeout_s=0)
        self.assertEqual([r["seq"] for r in everything["outputs"]], [1])

    def test_merger_client_wait_for_output(self):
        with wsm_client.MergerClient(self.daemon.endpoint, run_id="mc") as c:
            for s in (0, 100, 200, 300):
                c.send_checkpoint(s, s, 1e-3, model(s))
                c.flush(timeout_s=20)
                # paced: one output per due step (the daemon coalesces outputs while merges lag)
                self.assertTrue(wait_until(lambda: not wsm_client.status(self.daemon.endpoint)["pending"], 20))
            seen = []
            end = time.monotonic() + 30
            while len(seen) < 3 and time.monotonic() < end:
                seen += c.wait_for_output(timeout_s=5)
            self.assertEqual([r["step"] for r in seen], [100, 200, 300])
            self.assertEqual(c.wait_for_output(timeout_s=0.2), [])


class ResumedRun(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon(emulate="linear:300", every=100)

    def tearDown(self):
        self.daemon.cleanup()

    def test_resent_steps_with_the_same_bytes_are_acknowledged(self):
        ep = self.daemon.endpoint
        first = wsm_client.MergerClient(ep, run_id="resume")
        for s in (0, 100, 200):
            first.send_checkpoint(s, s, 1e-3, model(s))
        self.assertEqual(first.close(raise_errors=True)["acked"], 3)

        # The job restarts from its step-100 checkpoint and sends 200 again, then goes on.
        resumed = wsm_client.MergerClient(ep, run_id="resume")
        resumed.send_checkpoint(200, 200, 1e-3, model(200))
        resumed.send_checkpoint(300, 300, 1e-3, model(300))
        self.assertTrue(resumed.flush(timeout_s=20))
        resumed.send_checkpoint(100, 100, 1e-3, model(100, scale=2.0))  # the same step, other weights
        with self.assertRaisesRegex(wsm_client.MergerError, "step 100 already received, with different contents "
                                                            r"\(tensor 'layer.weight' differs"):
            resumed.flush(timeout_s=20)
        report = resumed.close()
        self.assertEqual((report["acked"], report["failed"]), (2, 1), report)
        st = wsm_client.status(ep)
        self.assertEqual([w["step"] for w in st["window"]], [0, 100, 200, 300])
        self.assertEqual(st["checkpoints_received"], 4)  # the resend is not a second checkpoint


if __name__ == "__main__":
    unittest.main()
