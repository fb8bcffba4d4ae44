"""MergerClient(metadata=...) against a real `wsm serve`: the model's metadata (here a Hugging Face
style config as JSON text) comes back from every merged output, read with h5py and with
wsm_client.load_checkpoint and read_metadata, beside the provenance; what the merger would refuse
(wsm.* keys, non-str values, more than 256 keys or 1 MiB) is refused at construction; a second client of the run
with other metadata fails with the merger's MANIFEST_MISMATCH message, while the first goes on."""
import json
import unittest

import h5py

import wsm_client
from daemon import Daemon, model

CONFIG = json.dumps({"architectures": ["GPT2LMHeadModel"], "n_embd": 16, "n_layer": 1, "note": "Émma"})
METADATA = {"hf.config": CONFIG, "tokenizer": "gpt2"}


def model_entries(meta):
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in meta.items()
            if not k.startswith("wsm.") and k != "format"}


class Metadata(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon(emulate="linear:200", every=100)

    def tearDown(self):
        self.daemon.cleanup()

    def test_metadata_comes_back_from_the_outputs(self):
        ep = self.daemon.endpoint
        with wsm_client.MergerClient(ep, run_id="meta", metadata=METADATA) as c:
            for s in (0, 100, 200, 300):
                c.send_checkpoint(s, s, 1e-3, model(s))
                self.assertTrue(c.flush(timeout_s=20))
            # Outputs of steps 200 and 300 (the daemon may replace a queued one by the newer one).
            records = []
            while not any(r["step"] == 300 for r in records):
                got = c.wait_for_output(timeout_s=30)
                self.assertTrue(got, f"no output of step 300 written; got {records}")
                records += got
        for rec in records:
            with h5py.File(rec["path"], "r") as f:
                attrs = dict(f.attrs)
            self.assertEqual(model_entries(attrs), METADATA)
            self.assertIn("wsm.provenance", attrs)  # the provenance is still there, the merger's own
            _, meta = wsm_client.load_checkpoint(rec["path"], framework="numpy")
            self.assertEqual(model_entries(meta), METADATA)
            self.assertEqual(model_entries(wsm_client.read_metadata(rec["path"])), METADATA)
            self.assertEqual(json.loads(meta["hf.config"])["note"], "Émma")

    def test_other_metadata_for_the_same_run_is_refused_and_the_run_goes_on(self):
        ep = self.daemon.endpoint
        first = wsm_client.MergerClient(ep, run_id="same", metadata=METADATA)
        first.send_checkpoint(0, 0, 1e-3, model(0))
        self.assertTrue(first.flush(timeout_s=20))
        other = wsm_client.MergerClient(ep, run_id="same", metadata={"hf.config": "{}"}, policy="wait",
                                        reconnect_timeout_ms=3000)
        other.send_checkpoint(100, 100, 1e-3, model(100))
        with self.assertRaises(wsm_client.MergerError) as caught:
            other.flush(timeout_s=20)
        self.assertIn("metadata", str(caught.exception))
        other.close(timeout_s=5)
        first.send_checkpoint(100, 100, 1e-3, model(100))
        self.assertTrue(first.flush(timeout_s=20))
        first.close()

    def test_what_the_merger_refuses_is_refused_at_construction(self):
        ep = self.daemon.endpoint
        with self.assertRaisesRegex(ValueError, "reserved"):
            wsm_client.MergerClient(ep, metadata={"wsm.provenance": "{}"})
        with self.assertRaisesRegex(TypeError, "str"):
            wsm_client.MergerClient(ep, metadata={"n_layer": 2})
        with self.assertRaisesRegex(ValueError, str(1 << 20)):
            wsm_client.MergerClient(ep, metadata={"k": "x" * (1 << 20)})
        with self.assertRaisesRegex(ValueError, "256"):
            wsm_client.MergerClient(ep, metadata={f"k{i}": "" for i in range(257)})


if __name__ == "__main__":
    unittest.main()
