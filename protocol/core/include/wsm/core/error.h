#pragma once
// The one error type wsm throws. Messages name the file, tensor or peer at fault, in one line.
#include <stdexcept>
#include <string>

namespace wsm {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace wsm
