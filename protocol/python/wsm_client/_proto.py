"""Finds the protoc-generated wsm_pb2 module for protocol/wire/wsm.proto.

Order: $WSM_PB2_DIR (a folder holding wsm_pb2.py, e.g. <build>/gen/python, which the CMake test
setup generates); a wsm_pb2 already importable; else it is generated once with protoc (from $PROTOC
or PATH) into ~/.cache/wsm_client/<hash of the .proto>/ (or $WSM_CACHE_DIR) and imported from there.
"""
import hashlib
import importlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

_PROTO = pathlib.Path(__file__).resolve().parent.parent.parent / "wire" / "wsm.proto"


def _load_from(folder):
    path = pathlib.Path(folder) / "wsm_pb2.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("wsm_pb2", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["wsm_pb2"] = module
    spec.loader.exec_module(module)
    return module


def _generate():
    if not _PROTO.is_file():
        raise ImportError(f"wsm_client: {_PROTO} not found; set WSM_PB2_DIR to a folder with wsm_pb2.py")
    digest = hashlib.sha256(_PROTO.read_bytes()).hexdigest()[:16]
    base = os.environ.get("WSM_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "wsm_client")
    folder = pathlib.Path(base) / digest
    module = _load_from(folder)
    if module is not None:
        return module
    protoc = os.environ.get("PROTOC") or shutil.which("protoc")
    if not protoc:
        raise ImportError("wsm_client: protoc not found (apt install protobuf-compiler, or set PROTOC / WSM_PB2_DIR)")
    tmp = folder.with_name(f"{digest}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    subprocess.run([protoc, f"--proto_path={_PROTO.parent}", f"--python_out={tmp}", str(_PROTO)], check=True)
    try:
        os.replace(tmp, folder)  # atomic: a concurrent importer sees all or nothing
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return _load_from(folder)


def load():
    folder = os.environ.get("WSM_PB2_DIR")
    if folder:
        module = _load_from(folder)
        if module is None:
            raise ImportError(f"wsm_client: WSM_PB2_DIR={folder} has no wsm_pb2.py")
        return module
    try:
        return importlib.import_module("wsm_pb2")
    except ImportError:
        return _generate()


pb = load()
