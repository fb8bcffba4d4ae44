# The CLI tests (test_cli.cpp) run the `wsm` executable: make sure it is built first.
if(TARGET protocol_cli AND TARGET wsm)
  add_dependencies(protocol_cli wsm)
endif()
