#pragma once
// Where the cached Austen corpus (data/cache/austen/{train,val}.txt) is, for `wsm train`, `wsm eval`
// and `wsm compare`. Finding and fetching data is the command line's job, not the trainer library's:
// the library reads the files it is given and never shells out.
#include <filesystem>

namespace wsm::tools {

// The folder holding data/cache/austen: the current directory when the cache is there; else the
// source tree the running `wsm` was built in (the nearest folder above the executable that holds
// tools/fetch-austen.py), running `python3 tools/fetch-austen.py` there once when the cache is
// missing; else the current directory (trainer::default_corpus then says how to create the cache).
std::filesystem::path austen_root();

}  // namespace wsm::tools
