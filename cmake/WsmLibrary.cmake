# wsm_library(<name> SOURCES ... [NO_INSTALL]): the library wsm_<name>, also reachable as
# wsm::<name>. Its public headers live in <folder>/include/wsm/<name>/ and are installed with it;
# everything else in the folder is internal. Installed libraries join the `wsm` CMake package
# (cmake/WsmPackage.cmake), each in its own export file, so a project outside the tree links them the
# same way and loads only the libraries (and third-party packages) it asks for.
function(wsm_library name)
  cmake_parse_arguments(L "NO_INSTALL" "" "SOURCES" ${ARGN})
  add_library(wsm_${name} STATIC ${L_SOURCES})
  add_library(wsm::${name} ALIAS wsm_${name})
  set_target_properties(wsm_${name} PROPERTIES EXPORT_NAME ${name} OUTPUT_NAME wsm_${name})
  target_compile_options(wsm_${name} PRIVATE ${WSM_WARNING_FLAGS})
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/include)
    target_include_directories(wsm_${name} PUBLIC
      $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  endif()
  if(NOT L_NO_INSTALL)
    install(TARGETS wsm_${name} EXPORT wsm_${name}_targets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/include)
      install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
    endif()
    set_property(GLOBAL APPEND PROPERTY WSM_INSTALLED_LIBRARIES ${name})
  endif()
endfunction()
