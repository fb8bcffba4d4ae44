#pragma once
// wire::receive with a bound on the envelope frame (the message without a chunk's payload), for
// the daemon: a frame over max_envelope_bytes is a fault (MALFORMED) before it is parsed, since
// parsing costs several times the frame's bytes in RAM (a Hello of a million tiny tensors:
// hundreds of MB). wire::receive is this without a bound.
#include "wsm/wire/wire.h"

namespace wsm::wire {

std::optional<Received> receive(zmq::socket_t& socket, SocketRole role, int timeout_ms, std::size_t max_envelope_bytes);

}  // namespace wsm::wire
