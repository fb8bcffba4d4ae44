# Script behind package.find_package_consumer (see ../package.cmake): installs wsm into a scratch
# prefix and builds three outside projects against it (CMakeLists.txt here), each in its own tree:
#   all        every library, plain find_package(wsm)
#   schedules  wsm::schedules alone, plain find_package(wsm), where neither Protobuf, HDF5 nor any
#              pkg-config module (libzmq, libxxhash) can be found
#   merger     wsm::merger alone, find_package(wsm COMPONENTS merger), where Protobuf and libzmq
#              cannot be found (pkg-config sees libxxhash only)
# Each runs and checks its results; the executables' NEEDED entries must not name the libraries their
# part does not use.
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()
# consumer(<name> <regex of forbidden NEEDED entries or ""> <pkg-config dir or ""> <cmake args>...)
function(consumer name forbidden pkg_dir)
  set(env ${CMAKE_COMMAND} -E env)
  if(pkg_dir)
    list(APPEND env PKG_CONFIG_LIBDIR=${pkg_dir} PKG_CONFIG_PATH=)
  endif()
  set(tree ${WORK_DIR}/build-${name})
  run(${env} ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${tree} -G ${GENERATOR} -DWSM_CONSUMER=${name}
      -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release ${ARGN})
  run(${CMAKE_COMMAND} --build ${tree})
  run(${tree}/consumer ${WORK_DIR}/run-${name})
  if(forbidden)
    execute_process(COMMAND readelf -d ${tree}/consumer OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "readelf -d ${tree}/consumer failed (${rc})")
    endif()
    string(REGEX MATCHALL "\\[lib[^]]*\\]" needed "${dynamic}")
    message(STATUS "consumer ${name} needs: ${needed}")
    foreach(lib IN LISTS needed)
      if(lib MATCHES "${forbidden}")
        message(FATAL_ERROR "consumer ${name} links ${lib}, which its part does not use")
      endif()
    endforeach()
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
consumer(all "" "")
file(MAKE_DIRECTORY ${WORK_DIR}/pkgconfig-none ${WORK_DIR}/pkgconfig-xxhash)
consumer(schedules "hdf5|zmq|protobuf|xxhash" ${WORK_DIR}/pkgconfig-none
         -DCMAKE_DISABLE_FIND_PACKAGE_Protobuf=ON -DCMAKE_DISABLE_FIND_PACKAGE_HDF5=ON)
execute_process(COMMAND pkg-config --variable pcfiledir libxxhash OUTPUT_VARIABLE xxhash_dir
                OUTPUT_STRIP_TRAILING_WHITESPACE)
file(COPY ${xxhash_dir}/libxxhash.pc DESTINATION ${WORK_DIR}/pkgconfig-xxhash)
consumer(merger "zmq|protobuf" ${WORK_DIR}/pkgconfig-xxhash -DCMAKE_DISABLE_FIND_PACKAGE_Protobuf=ON)
