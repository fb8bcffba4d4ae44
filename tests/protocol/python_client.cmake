# The Python client's end-to-end test (protocol_client_python) needs protoc's Python output of
# protocol/wire/wsm.proto: generated here into <build>/gen/python/wsm_pb2.py, found by wsm_client through
# WSM_PB2_DIR (set by the test). wsm_client can also generate it itself on first import.
set(wsm_py_gen ${PROJECT_BINARY_DIR}/gen/python)
add_custom_command(OUTPUT ${wsm_py_gen}/wsm_pb2.py
  COMMAND ${CMAKE_COMMAND} -E make_directory ${wsm_py_gen}
  COMMAND protobuf::protoc --proto_path=${PROJECT_SOURCE_DIR}/protocol/wire --python_out=${wsm_py_gen}
          ${PROJECT_SOURCE_DIR}/protocol/wire/wsm.proto
  DEPENDS ${PROJECT_SOURCE_DIR}/protocol/wire/wsm.proto protobuf::protoc
  COMMENT "protoc wsm.proto (Python)")
add_custom_target(wsm_python_proto ALL DEPENDS ${wsm_py_gen}/wsm_pb2.py)
if(TARGET protocol_client_python)
  add_dependencies(protocol_client_python wsm_python_proto)
endif()
if(TARGET merger_serve_budget)  # runs tests/merger/python_client_budget.py
  add_dependencies(merger_serve_budget wsm_python_proto)
endif()
