# `cmake --install` writes the installed libraries (wsm::core, wsm::formats, wsm::wire, wsm::client,
# wsm::schedules, wsm::kernels, wsm::merger), their public headers, the `wsm` command and this CMake
# package, so another project does find_package(wsm REQUIRED) and links wsm::<name>. Each library has
# its own export file (wsm-<name>-targets.cmake); wsmConfig.cmake loads a library only with what it
# links, so `find_package(wsm REQUIRED COMPONENTS schedules)` needs neither HDF5, Protobuf nor ZeroMQ.
include(CMakePackageConfigHelpers)
set(WSM_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/wsm)
get_property(wsm_installed GLOBAL PROPERTY WSM_INSTALLED_LIBRARIES)
foreach(name IN LISTS wsm_installed)
  install(EXPORT wsm_${name}_targets NAMESPACE wsm:: FILE wsm-${name}-targets.cmake DESTINATION ${WSM_CMAKE_DIR})
endforeach()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/wsmConfig.cmake.in
  ${PROJECT_BINARY_DIR}/wsmConfig.cmake INSTALL_DESTINATION ${WSM_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/wsmConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/wsmConfig.cmake ${PROJECT_BINARY_DIR}/wsmConfigVersion.cmake
  DESTINATION ${WSM_CMAKE_DIR})
