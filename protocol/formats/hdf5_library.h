#pragma once
// libhdf5 as this library uses it: one process-wide lock around every libhdf5 call (which also
// silences libhdf5's own stderr dump in the calling thread), one-line errors from its error stack,
// and RAII handles. Internal to protocol/formats (the hdf5_*.cpp files).
// Lock discipline: hdf5_lock() is held (through Lock) around every libhdf5 call in wsm's process.
#include <hdf5.h>

#include <mutex>
#include <string>
#include <utility>

namespace wsm::hdf5 {

// Silences libhdf5's own stderr dump in this thread (and, once, keeps it from registering its
// atexit teardown); Lock calls it.
void quiet_hdf5();
std::recursive_mutex& hdf5_lock();
// Held around every libhdf5 call in this process; taking it also silences libhdf5 in this thread.
struct Lock {
  explicit Lock(std::recursive_mutex& m) : guard(m) { quiet_hdf5(); }
  std::lock_guard<std::recursive_mutex> guard;
};

// RAII for every hid_t: the right H5?close for its kind.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = H5I_INVALID_HID;
  }
  // Closes and reports failure (files: this is where buffered data reaches the disk).
  herr_t close() {
    herr_t r = 0;
    if (id_ >= 0 && close_) r = close_(id_);
    id_ = H5I_INVALID_HID;
    return r;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

// The innermost message on libhdf5's error stack, as " (message)", for a one-line error.
std::string hdf5_detail();
hid_t check(hid_t id, const std::string& what);        // throws wsm::Error(what + detail) when id < 0
void check_status(herr_t r, const std::string& what);  // throws when r < 0
Handle type_handle(hid_t id, const std::string& what);
Handle space_handle(hid_t id, const std::string& what);
Handle plist_handle(hid_t id, const std::string& what);

}  // namespace wsm::hdf5
