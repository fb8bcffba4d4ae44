"""XXH3-64 (seed 0), the wire checksum (docs/protocol.md), from the python-xxhash package."""
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
