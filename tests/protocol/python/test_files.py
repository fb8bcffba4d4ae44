"""load_state_dict on files written by wsm (`wsm convert`: HDF5, bf16 HDF5, safetensors, a sharded
Hugging Face directory) and by h5py and the safetensors package; convert_torch_checkpoint on
torch.save files. References: the numpy arrays written, and numpy's own round-to-nearest-even bf16."""
import json
import os
import pathlib
import re
import stat
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

import wsm_client
from daemon import WSM_BIN

try:
    import torch
except ImportError:
    torch = None
try:
    import safetensors.numpy as st_numpy
except ImportError:
    st_numpy = None


def needs(module, env, what):
    """Skips when `what` is missing, unless the CI flavour installs it (then missing is a failure)."""
    if module is None:
        if os.environ.get(env) == "1":
            raise AssertionError(f"{what} is installed by CI for this flavour but not importable")
        raise unittest.SkipTest(f"{what} not installed")


def reference():
    rng = np.random.default_rng(7)
    return {
        "a/b.weight": rng.standard_normal((33, 17)).astype(np.float32),
        "%odd.name": rng.standard_normal(40).astype(np.float32) * 1e3,
        "counter": np.array([12, -3], dtype=np.int64),
        "mask": np.array([True, False, True]),
    }


def bf16_round(x):
    """float32 -> bfloat16 (round to nearest even) -> float32, in numpy."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint32)
    return (rounded << 16).view(np.float32)


def as_numpy(v):
    if torch is not None and isinstance(v, torch.Tensor):
        return v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
    return np.asarray(v)


class Files(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = pathlib.Path(cls.tmp.name)
        cls.ref = reference()
        cls.src = cls.dir / "h5py.h5"
        with h5py.File(cls.src, "w") as f:  # not a wsm file: names are dataset paths
            for name, a in cls.ref.items():
                f.create_dataset(name, data=a)
            f.attrs["note"] = "from h5py"

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def wsm_convert(self, out, *args):
        subprocess.run([WSM_BIN, "convert", str(self.src), str(self.dir / out), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        return self.dir / out

    def assert_same(self, got, ref, bf16=()):
        self.assertEqual(list(got), list(ref))
        for name, a in ref.items():
            want = bf16_round(a) if name in bf16 else a
            g = as_numpy(got[name])
            self.assertEqual(g.shape, a.shape, name)
            self.assertEqual(g.dtype, want.dtype, name)
            np.testing.assert_array_equal(g, want, err_msg=name)

    def test_h5py_file(self):
        sd = wsm_client.load_state_dict(self.src)
        self.assert_same(sd, dict(sorted(self.ref.items())))  # a non-wsm file lists datasets by name

    def test_wsm_hdf5_restores_escaped_names_and_order(self):
        path = self.wsm_convert("wsm.h5")
        with h5py.File(path, "r") as f:
            self.assertIn("a%2Fb.weight", f["tensors"])  # the escaped name is what is on disk
        sd, meta = wsm_client.load_checkpoint(path)
        self.assert_same(sd, dict(sorted(self.ref.items())))
        self.assertEqual(meta["wsm.format_version"], 1)

    def test_wsm_bf16_hdf5(self):
        path = self.wsm_convert("bf16.h5", "--dtype", "bf16")
        floats = {"a/b.weight", "%odd.name"}
        sd = wsm_client.load_state_dict(path)
        self.assert_same(sd, dict(sorted(self.ref.items())), bf16=floats)
        if torch is not None:
            self.assertEqual(sd["a/b.weight"].dtype, torch.bfloat16)
            want = torch.from_numpy(self.ref["a/b.weight"]).to(torch.bfloat16)  # torch's own rounding
            self.assertTrue(torch.equal(sd["a/b.weight"], want))
        np_sd = wsm_client.load_state_dict(path, framework="numpy")
        self.assertEqual(np_sd["a/b.weight"].dtype, np.float32)

    def test_wsm_safetensors_and_sharded_directory(self):
        one = self.wsm_convert("one.safetensors")
        self.assert_same(wsm_client.load_state_dict(one), dict(sorted(self.ref.items())))
        sharded = self.wsm_convert("sharded", "--shard-size", "1KB")
        shards = sorted(p.name for p in sharded.glob("model-*.safetensors"))
        self.assertGreater(len(shards), 1, shards)
        self.assertEqual(shards[0], f"model-00001-of-{len(shards):05d}.safetensors")
        for path in (sharded, sharded / "model.safetensors.index.json"):
            self.assert_same(wsm_client.load_state_dict(path), dict(sorted(self.ref.items())))

    def test_hugging_face_directory_with_one_file_and_config(self):
        folder = self.dir / "hf-one"
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "gpt2"}')
        self.wsm_convert("hf-one/model.safetensors")
        self.assert_same(wsm_client.load_state_dict(folder), dict(sorted(self.ref.items())))

    def test_hugging_face_sharded_set_written_by_safetensors(self):
        needs(st_numpy, "WSM_EXPECT_SAFETENSORS", "safetensors")
        folder = self.dir / "hf"
        folder.mkdir()
        names = list(self.ref)
        parts = [names[:2], names[2:]]
        weight_map = {}
        for i, part in enumerate(parts, 1):
            shard = f"model-{i:05d}-of-{len(parts):05d}.safetensors"
            st_numpy.save_file({n: self.ref[n] for n in part}, str(folder / shard), metadata={"format": "pt"})
            weight_map.update({n: shard for n in part})
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1},
                                                                         "weight_map": weight_map}))
        sd = wsm_client.load_state_dict(folder, framework="numpy")
        self.assertEqual(set(sd), set(self.ref))
        for n, a in self.ref.items():
            np.testing.assert_array_equal(sd[n], a)

    def test_provenance_of_merges_matches_their_data(self):
        # Three h5py checkpoints (steps given as PATH@STEP), merged with cosine into one HDF5 file,
        # one safetensors file and a sharded directory: each output's provenance names the spec and
        # sources, and its weights reproduce the merged tensor from the inputs (float64 numpy).
        rng = np.random.default_rng(11)
        inputs = []
        for k in range(3):
            a = rng.standard_normal((9, 7)).astype(np.float32)
            path = self.dir / f"prov-{k}.h5"
            with h5py.File(path, "w") as f:
                f.create_dataset("w", data=a)
                f.attrs["note"] = f"input {k}"
            inputs.append((path, a))
        for out in ("prov.h5", "prov.safetensors", "prov-sharded"):
            args = ["--shard-size", "100B"] if out == "prov-sharded" else []
            subprocess.run([WSM_BIN, "merge", "--shape", "cosine", *args, "--out", str(self.dir / out),
                            *[f"{p}@{100 * (k + 1)}" for k, (p, _) in enumerate(inputs)]],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
            prov = wsm_client.read_provenance(self.dir / out)
            self.assertEqual(prov["tool"], "wsm merge")
            self.assertEqual(prov["spec"], "cosine")
            self.assertEqual([s["step"] for s in prov["sources"]], [100, 200, 300])
            self.assertTrue(prov["wsm_version"])
            weights = [s["weight"] for s in prov["sources"]]
            self.assertAlmostEqual(sum(weights), 1.0, places=12)
            self.assertGreater(len(set(round(w, 12) for w in weights)), 1, weights)  # cosine over 3 is not flat
            want = sum(w * a.astype(np.float64) for w, (_, a) in zip(weights, inputs))
            got = as_numpy(wsm_client.load_state_dict(self.dir / out)["w"]).astype(np.float64)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=out)
            self.assertEqual(wsm_client.read_metadata(self.dir / out)["note"], "input 2")  # the newest input's
        with self.assertRaisesRegex(wsm_client.CheckpointFileError, "no wsm.provenance"):
            wsm_client.read_provenance(self.src)

    def test_errors_name_the_problem(self):
        bad = self.dir / "garbage.safetensors"
        bad.write_bytes(b"\xff" * 64)
        with self.assertRaisesRegex(wsm_client.CheckpointFileError, "header length"):
            wsm_client.load_state_dict(bad)
        with self.assertRaisesRegex(wsm_client.CheckpointFileError, "no such file"):
            wsm_client.load_state_dict(self.dir / "absent.h5")
        empty = self.dir / "empty"
        empty.mkdir()
        with self.assertRaisesRegex(wsm_client.CheckpointFileError, "no \\*.safetensors"):
            wsm_client.load_state_dict(empty)


class TorchFiles(unittest.TestCase):
    def setUp(self):
        needs(torch, "WSM_EXPECT_TORCH", "torch")
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = pathlib.Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_torch_save_is_named_and_converted(self):
        sd = {"w": torch.randn(5, 3), "b": torch.randn(3).to(torch.bfloat16), "n": torch.tensor([7])}
        pt = self.dir / "pytorch_model.bin"
        torch.save({"model": sd, "step": 3}, pt)
        with self.assertRaisesRegex(wsm_client.CheckpointFileError, r"torch.save \(pickle\).*convert_torch_checkpoint"):
            wsm_client.load_state_dict(pt)
        out = wsm_client.convert_torch_checkpoint(pt)
        self.assertEqual(out, self.dir / "model.safetensors")
        got = wsm_client.load_state_dict(out)
        self.assertEqual(list(got), ["w", "b", "n"])
        for k, v in sd.items():
            self.assertEqual(got[k].dtype, v.dtype)
            self.assertTrue(torch.equal(got[k], v), k)
        # wsm itself reads the converted file.
        info = json.loads(subprocess.run([WSM_BIN, "inspect", str(out), "--json"], check=True,
                                         capture_output=True, text=True, timeout=60).stdout)
        self.assertEqual([(t["name"], t["dtype"]) for t in info["tensors"]], [("w", "f32"), ("b", "bf16"), ("n", "i64")])

    def test_sharded_torch_set_is_converted_with_its_index(self):
        sd = {f"layer{i}.weight": torch.randn(4, 4) for i in range(3)}
        shards = {"pytorch_model-00001-of-00002.bin": ["layer0.weight", "layer1.weight"],
                  "pytorch_model-00002-of-00002.bin": ["layer2.weight"]}
        for shard, names in shards.items():
            torch.save({n: sd[n] for n in names}, self.dir / shard)
        (self.dir / "pytorch_model.bin.index.json").write_text(json.dumps(
            {"metadata": {"total_size": 192}, "weight_map": {n: s for s, ns in shards.items() for n in ns}}))
        index = wsm_client.convert_torch_checkpoint(self.dir / "pytorch_model.bin.index.json")
        self.assertEqual(index, self.dir / "model.safetensors.index.json")
        self.assertEqual(sorted(p.name for p in self.dir.glob("*.safetensors")),
                         ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        got = wsm_client.load_state_dict(self.dir)
        self.assertEqual(list(got), list(sd))
        for k, v in sd.items():
            self.assertTrue(torch.equal(got[k], v), k)

    def test_the_command_wsm_names_converts_the_file(self):
        """wsm refuses a torch.save file with a command; that command works as printed (it once named a
        module that does not exist), writes an ordinary 0644 file, and warns of nothing."""
        sd = {"w": torch.randn(4, 3), "n": torch.tensor([5])}
        pt = self.dir / "ckpt.pt"
        torch.save(sd, pt)
        r = subprocess.run([WSM_BIN, "inspect", str(pt)], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        m = re.search(r"python (-m \S+) (\S+) (\S+)$", r.stderr.strip())
        self.assertIsNotNone(m, r.stderr)
        self.assertEqual((m.group(2), m.group(3)), (str(pt), str(self.dir / "ckpt.safetensors")))
        old_umask = os.umask(0o022)
        try:
            run = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", *m.group(1).split(), m.group(2),
                                  m.group(3)], capture_output=True, text=True, timeout=120)
        finally:
            os.umask(old_umask)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertNotIn("Warning", run.stderr)
        out = pathlib.Path(m.group(3))
        self.assertEqual(stat.S_IMODE(out.stat().st_mode), 0o644)
        got = wsm_client.load_state_dict(out)
        self.assertEqual(list(got), ["w", "n"])
        for k, v in sd.items():
            self.assertTrue(torch.equal(got[k], v), k)

    def test_only_weights_are_unpickled(self):
        pt = self.dir / "evil.pt"
        torch.save({"w": torch.zeros(2), "obj": Unsafe()}, pt)
        with self.assertRaisesRegex(ValueError, "weights_only=True"):
            wsm_client.convert_torch_checkpoint(pt)
        self.assertFalse((self.dir / "evil.safetensors").exists())


class Unsafe:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


if __name__ == "__main__":
    unittest.main()
