# The installed package works for a project outside the tree: install into a scratch prefix, build
# tests/package/consumer against it with find_package(wsm) three times (every library; wsm::schedules
# alone without HDF5, Protobuf or ZeroMQ; wsm::merger alone without Protobuf or ZeroMQ) and run each.
add_test(NAME package.find_package_consumer
  COMMAND ${CMAKE_COMMAND}
    -DBUILD_DIR=${PROJECT_BINARY_DIR} -DSOURCE_DIR=${CMAKE_CURRENT_LIST_DIR}/consumer
    -DWORK_DIR=${PROJECT_BINARY_DIR}/package_test -DGENERATOR=${CMAKE_GENERATOR}
    -P ${CMAKE_CURRENT_LIST_DIR}/consumer/run.cmake)
set_tests_properties(package.find_package_consumer PROPERTIES TIMEOUT 600 LABELS "fast")
