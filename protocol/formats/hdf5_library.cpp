#include "protocol/formats/hdf5_library.h"

#include <algorithm>

#include "wsm/core/error.h"

namespace wsm::hdf5 {

// Once, before libhdf5's first use: silences its own multi-line stderr dump (errors reach the user
// as one-line wsm::Errors instead), and keeps it from registering its atexit teardown. A file
// whose close failed (a full disk: the final flush cannot be written) stays in libhdf5's tables,
// and that teardown would close it again at exit and crash; wsm closes every file it opened
// itself, and a temporary left unflushed at exit is removed or ignored anyway.
// Debian's libhdf5 is the thread-safe build, where the printing switch is per thread: every
// thread that calls libhdf5 turns it off for itself (`Lock` does).
void quiet_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5dont_atexit(); });
  thread_local bool quiet = false;
  if (!quiet) quiet = H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0;
}

std::recursive_mutex& hdf5_lock() {
  static std::recursive_mutex m;
  return m;
}

// The innermost message on libhdf5's error stack, for the one-line error.
std::string hdf5_detail() {
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
        auto* s = static_cast<std::string*>(out);
        if (s->empty() && e->desc) *s = e->desc;
        return 0;
      },
      &msg);
  H5Eclear2(H5E_DEFAULT);
  std::replace(msg.begin(), msg.end(), '\n', ' ');  // errors are one line
  return msg.empty() ? "" : " (" + msg + ")";
}

hid_t check(hid_t id, const std::string& what) {
  if (id < 0) throw Error(what + hdf5_detail());
  return id;
}
void check_status(herr_t r, const std::string& what) {
  if (r < 0) throw Error(what + hdf5_detail());
}

Handle type_handle(hid_t id, const std::string& what) { return Handle(check(id, what), H5Tclose); }
Handle space_handle(hid_t id, const std::string& what) { return Handle(check(id, what), H5Sclose); }
Handle plist_handle(hid_t id, const std::string& what) { return Handle(check(id, what), H5Pclose); }

}  // namespace wsm::hdf5
