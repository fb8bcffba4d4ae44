# The `wsm merge` CLI tests (test_merge_cli.cpp) run the `wsm` executable: build it first.
if(TARGET merger_merge_cli AND TARGET wsm)
  add_dependencies(merger_merge_cli wsm)
endif()
