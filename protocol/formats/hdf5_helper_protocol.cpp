#include "protocol/formats/hdf5_helper_protocol.h"

#include <cstring>

#include "wsm/core/error.h"

namespace wsm::hdf5 {

std::string encode(const HelperRequest& r) {
  std::string out(1 + sizeof r.v, r.kind);
  std::memcpy(out.data() + 1, r.v.data(), sizeof r.v);
  return out + r.path;
}

HelperRequest decode(std::string_view req) {
  HelperRequest r;
  if (req.size() < 1 + sizeof r.v) throw Error("hdf5 helper: malformed request");
  r.kind = req[0];
  std::memcpy(r.v.data(), req.data() + 1, sizeof r.v);
  r.path = req.substr(1 + sizeof r.v);
  return r;
}

}  // namespace wsm::hdf5
