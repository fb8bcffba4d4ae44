#pragma once
// Text that came from a file or a peer (a tensor name, a metadata value, a helper process's
// message), made fit for a one-line error (wsm::Error messages are one line): every control
// character (bytes below 0x20, and 0x7f) is written as an escape, "\n" "\r" "\t" or "\xNN".
// Other bytes, UTF-8 included, pass unchanged.
#include <string>
#include <string_view>

namespace wsm {

std::string printable(std::string_view text);

}  // namespace wsm
