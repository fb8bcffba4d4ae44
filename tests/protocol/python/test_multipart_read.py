"""load_state_dict of what the daemons of a sharded job write (docs/sharded.md): two real `wsm serve`
daemons (one per "node", the same --out) and two ranks that each send a block of one tensor.
The step directory reads as whole tensors equal to the float64 weighted mean of the whole tensors
sent; a part alone, or a directory missing a part, is refused with a message; a one-node job's
single part file reads as whole tensors (never slice-named)."""
import json
import os
import pathlib
import shutil
import tempfile
import unittest

import numpy as np

import wsm_client
from daemon import Daemon, wait_until

STEPS = (0, 100, 200)  # linear:200 writes one output at step 200
ROWS = 7               # rank 0 holds rows 0:4 of w, rank 1 rows 4:7 (uneven)


def whole(step):
    i = np.arange(ROWS * 5, dtype=np.float64)
    return {"w": np.cos(0.05 * i + 0.01 * step).astype(np.float32).reshape(ROWS, 5),
            "b": np.full(3, 0.25 * step, dtype=np.float32)}


def send_rank(endpoint, rank, local_world_size):
    client = wsm_client.MergerClient(endpoint, run_id="tp", rank=rank, world_size=2,
                                     local_world_size=local_world_size, policy="wait")
    lo, hi = (0, 4) if rank == 0 else (4, ROWS)
    for s in STEPS:
        full = whole(s)
        client.send_checkpoint(s, 10 * s, 1e-3, {"w": full["w"][lo:hi], "b": full["b"]},
                               slices={"w": ((ROWS, 5), (lo, 0)), "b": wsm_client.REPLICATED})
    return client


def outputs(out):
    records = []
    for index in sorted(pathlib.Path(out).glob("index*.json")):
        records += json.loads(index.read_text())["outputs"]
    return records


class MultipartRead(unittest.TestCase):
    def setUp(self):
        self.out = tempfile.mkdtemp(prefix="wsm-py-parts-")
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.stop()
        shutil.rmtree(self.out, ignore_errors=True)

    def run_job(self, nodes):
        """Both ranks through `nodes` daemons (1: one node holds both ranks; 2: one rank each)."""
        for n in range(nodes):
            self.daemons.append(Daemon(emulate="linear:200", every=100, out=self.out,
                                       extra=("--index", f"index-{n}.json")))
        local = 2 // nodes
        clients = [send_rank(self.daemons[r * nodes // 2].endpoint, r, local) for r in (0, 1)]
        for c in clients:
            self.assertTrue(c.flush(timeout_s=60))
        for c in clients:
            self.assertEqual(c.close()["errors"], [])
        # Stopping drops an output still queued, so wait (bounded) until every node has written its
        # part of both outputs: linear:200 is covered from step 100 on (checkpoints 0 and 100 fill
        # its window (-100, 100]).
        wait_until(lambda: all([r["step"] for r in outputs(self.out)].count(s) >= nodes for s in (100, 200)), 60)
        for d in self.daemons:
            d.stop()
        records = outputs(self.out)
        self.assertEqual({r["step"] for r in records}, {100, 200}, records)
        return next(r for r in records if r["step"] == 200)

    def expected(self, record):
        return {name: sum(w * whole(s)[name].astype(np.float64) for s, w in zip(record["sources"], record["weights"]))
                for name in ("w", "b")}

    def path(self, record):
        p = pathlib.Path(record["path"])
        return p if p.is_absolute() else pathlib.Path(self.out) / p if not p.exists() else p

    def test_two_nodes_read_as_whole_tensors_checked_for_completeness(self):
        record = self.run_job(nodes=2)
        step_dir = self.path(record)
        parts = sorted(p.name for p in step_dir.iterdir())
        self.assertEqual(parts, ["part-rank00000.h5", "part-rank00001.h5"])
        for framework in ("numpy", "auto"):
            sd = wsm_client.load_state_dict(step_dir, framework=framework)
            self.assertEqual(sorted(sd), ["b", "w"])
            ref = self.expected(record)
            for name in ("w", "b"):
                got = np.asarray(sd[name])
                self.assertEqual(got.shape, ref[name].shape)
                np.testing.assert_allclose(got, ref[name], rtol=0, atol=2e-6)
        meta = wsm_client.read_metadata(step_dir)
        self.assertEqual(int(meta["wsm.step"]), 200)
        self.assertNotIn("wsm.part", meta)

        # A part alone holds rank 0 of 2: refused, naming the directory to read instead.
        with self.assertRaisesRegex(wsm_client.CheckpointFileError, r"one part of a multi-part checkpoint \(ranks 0 of 2\).*"
                                    + str(step_dir).replace("\\", "\\\\")):
            wsm_client.load_state_dict(step_dir / "part-rank00000.h5")
        # A missing part (still being written on another node): refused.
        os.rename(step_dir / "part-rank00001.h5", step_dir / "part-rank00001.h5.tmp-1-1")
        with self.assertRaisesRegex(wsm_client.CheckpointFileError, r"no part holds ranks 1 of 2"):
            wsm_client.load_state_dict(step_dir)

    def test_one_node_part_file_reads_whole(self):
        record = self.run_job(nodes=1)
        step_dir = self.path(record)
        (part,) = list(step_dir.iterdir())
        ref = self.expected(record)
        for path in (step_dir, part):
            sd = wsm_client.load_state_dict(path, framework="numpy")
            self.assertEqual(sorted(sd), ["b", "w"])  # no "w[0:4,0:5]"
            for name in ("w", "b"):
                np.testing.assert_allclose(sd[name], ref[name], rtol=0, atol=2e-6)


if __name__ == "__main__":
    unittest.main()
