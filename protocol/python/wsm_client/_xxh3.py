"""XXH3-64 (seed 0): the python-xxhash module when installed, else libxxhash through ctypes."""
import ctypes
import ctypes.util

try:
    import xxhash as _xxhash

    def checksum(buf):
        return _xxhash.xxh3_64_intdigest(buf)

    class Stream:
        def __init__(self):
            self._h = _xxhash.xxh3_64()

        def update(self, buf):
            self._h.update(buf)

        def digest(self):
            return self._h.intdigest()

except ImportError:
    _lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
    _lib.XXH3_64bits.restype = ctypes.c_uint64
    _lib.XXH3_64bits.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    _lib.XXH3_createState.restype = ctypes.c_void_p
    _lib.XXH3_freeState.argtypes = [ctypes.c_void_p]
    _lib.XXH3_64bits_reset.argtypes = [ctypes.c_void_p]
    _lib.XXH3_64bits_update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    _lib.XXH3_64bits_digest.restype = ctypes.c_uint64
    _lib.XXH3_64bits_digest.argtypes = [ctypes.c_void_p]

    def _pointer(buf):
        import numpy as np

        arr = np.frombuffer(memoryview(buf).cast("B"), dtype=np.uint8)
        return (arr.ctypes.data if arr.size else None), arr.size, arr

    def checksum(buf):
        ptr, n, _keep = _pointer(buf)
        return _lib.XXH3_64bits(ptr, n)

    class Stream:
        def __init__(self):
            self._state = _lib.XXH3_createState()
            _lib.XXH3_64bits_reset(self._state)

        def __del__(self):
            if getattr(self, "_state", None):
                _lib.XXH3_freeState(self._state)

        def update(self, buf):
            ptr, n, _keep = _pointer(buf)
            _lib.XXH3_64bits_update(self._state, ptr, n)

        def digest(self):
            return _lib.XXH3_64bits_digest(self._state)
