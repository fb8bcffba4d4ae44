"""The installed package: imported from the venv (not the source tree), its generated protobuf module
in step with protocol/wire/wsm.proto (compiled here with protoc), and status() on this protobuf release."""
import importlib.metadata
import os
import pathlib
import re
import subprocess
import tempfile
import unittest

import google.protobuf
from google.protobuf import descriptor_pb2

import wsm_client
from wsm_client import wsm_pb2
from daemon import Daemon, model

SOURCE = pathlib.Path(os.environ.get("WSM_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[3]))


def without_json_names(file_proto):
    """protoc's --descriptor_set_out adds json_name to every field; the generated module omits it."""
    def strip(messages):
        for m in messages:
            for f in m.field:
                f.ClearField("json_name")
            strip(m.nested_type)
    strip(file_proto.message_type)
    return file_proto


class Package(unittest.TestCase):
    def test_imported_from_the_installed_package(self):
        if os.environ.get("WSM_EXPECT_INSTALLED") != "1":
            self.skipTest("run outside the venv tests")
        here = pathlib.Path(wsm_client.__file__).resolve()
        self.assertNotIn((SOURCE / "protocol" / "python").resolve(), here.parents, here)
        self.assertEqual(pathlib.Path(wsm_pb2.__file__).resolve().parent, here.parent)

    def test_dependencies_are_declared(self):
        declared = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower()
                    for r in importlib.metadata.requires("wsm-client") if "extra ==" not in r}
        self.assertTrue({"pyzmq", "protobuf", "numpy", "xxhash"} <= declared, declared)

    def test_generated_module_matches_wsm_proto(self):
        protoc = os.environ.get("PROTOC", "protoc")
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "wsm.pb"
            subprocess.run([protoc, f"--proto_path={SOURCE / 'protocol' / 'wire'}", f"--descriptor_set_out={out}",
                            str(SOURCE / "protocol" / "wire" / "wsm.proto")], check=True)
            fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
        shipped = descriptor_pb2.FileDescriptorProto.FromString(wsm_pb2.DESCRIPTOR.serialized_pb)
        self.assertEqual(without_json_names(fresh), without_json_names(shipped), "protocol/python/wsm_client/wsm_pb2.py is out of date with "
                                         "protocol/wire/wsm.proto: run tools/gen-python-proto.sh")

    def test_message_to_dict_keeps_types(self):
        e = wsm_pb2.ErrorReply(code=wsm_pb2.DUPLICATE_STEP, message="m", step=1 << 40)
        self.assertEqual(wsm_client.message_to_dict(e),
                         {"code": "DUPLICATE_STEP", "message": "m", "step": 1 << 40, "request_id": 0})


class StatusOnThisProtobuf(unittest.TestCase):
    def test_status_after_a_checkpoint(self):
        print(f"protobuf {google.protobuf.__version__}", flush=True)
        d = Daemon(emulate="linear:200,1-sqrt:300")
        try:
            with wsm_client.MergerClient(d.endpoint, run_id="st") as c:
                c.send_checkpoint(100, 5000, 1e-3, model(100))
                self.assertTrue(c.flush(timeout_s=20))
            st = wsm_client.status(d.endpoint)
            self.assertEqual([(w["run_id"], w["step"], w["tokens"]) for w in st["window"]], [("st", 100, 5000)])
            self.assertEqual(st["window"][0]["bytes"], sum(v.nbytes for v in model(100).values()))
            self.assertEqual([e["spec"] for e in st["emulations"]], ["linear", "1-sqrt"])
            self.assertEqual(st["checkpoints_received"], 1)
            self.assertEqual(st["pending"], [])  # empty repeated fields are present
            self.assertEqual(st["every"], 100)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
