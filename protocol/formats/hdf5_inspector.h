#pragma once
// The HDF5 helper process's side (see wsm/formats/hdf5_checkpoint.h): everything libhdf5 does with
// a file wsm reads happens there, behind this request handler, never in wsm's own process.
#include "protocol/formats/child_worker.h"

namespace wsm::hdf5 {

// Answers HelperRequests (hdf5_helper_protocol.h): 'O' a file's JSON manifest, 'R' elements of one
// of its datasets, 'C' forgets it. The files it holds open live in the helper process only.
ChildWorker::Serve hdf5_serve();

}  // namespace wsm::hdf5
