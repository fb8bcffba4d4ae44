# The other parsers of untrusted bytes (docs/fuzzing.md): wire messages through the daemon core,
# the checkpoint assembler, the HDF5 reader (helper-process form), sharded index files and version-2
# Hellos with their slice sets (sharded_hello). They link
# wsm's libraries, so they are built only when the whole tree is compiled by clang with
# -fsanitize=fuzzer-no-link,address,undefined: tools/fuzz.sh configures build-fuzz/ that way.
if(WSM_FUZZ AND CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  foreach(name daemon_wire assembler hdf5 sharded_index sharded_hello)
    add_executable(fuzz_${name} ${CMAKE_CURRENT_LIST_DIR}/fuzz_${name}.cpp)
    target_link_libraries(fuzz_${name} PRIVATE wsm_merger_daemon wsm_merger wsm_wire wsm_formats wsm_core)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
    set_target_properties(fuzz_${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
  endforeach()
endif()

# libFuzzer target for the safetensors header parser (tests/protocol/fuzz_safetensors_header.cpp),
# built with clang++ -fsanitize=fuzzer when clang is installed; a CTest labelled `slow` builds it
# and fuzzes for 10 s. Part of `all` only with -DWSM_FUZZ=ON. Without clang nothing is defined.
find_program(WSM_CLANGXX NAMES clang++ clang++-16 clang++-15 clang++-14)
find_path(WSM_NLOHMANN_INCLUDE nlohmann/json.hpp)
if(NOT WSM_CLANGXX OR NOT WSM_NLOHMANN_INCLUDE)
  message(STATUS "wsm: clang++ not found, skipping the safetensors header fuzzer")
  return()
endif()

set(fuzz_bin ${PROJECT_BINARY_DIR}/fuzz_safetensors_header)
set(fuzz_srcs
  ${PROJECT_SOURCE_DIR}/tests/protocol/fuzz_safetensors_header.cpp
  ${PROJECT_SOURCE_DIR}/protocol/formats/safetensors_header.cpp
  ${PROJECT_SOURCE_DIR}/protocol/core/dtype.cpp
  ${PROJECT_SOURCE_DIR}/protocol/core/printable.cpp)
add_custom_command(OUTPUT ${fuzz_bin}
  COMMAND ${WSM_CLANGXX} -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
          -I${PROJECT_SOURCE_DIR} -I${PROJECT_SOURCE_DIR}/protocol/core/include -I${PROJECT_SOURCE_DIR}/protocol/formats/include -I${WSM_NLOHMANN_INCLUDE} ${fuzz_srcs} -o ${fuzz_bin}
  DEPENDS ${fuzz_srcs} ${PROJECT_SOURCE_DIR}/protocol/formats/include/wsm/formats/safetensors_header.h ${PROJECT_SOURCE_DIR}/protocol/formats/include/wsm/formats/checkpoint.h
  COMMENT "clang++ -fsanitize=fuzzer fuzz_safetensors_header"
  VERBATIM)
if(WSM_FUZZ)
  add_custom_target(fuzz_safetensors_header ALL DEPENDS ${fuzz_bin})
else()
  add_custom_target(fuzz_safetensors_header DEPENDS ${fuzz_bin})
endif()

# New corpus entries go to the build tree; the checked-in seeds are read only.
set(fuzz_corpus ${PROJECT_BINARY_DIR}/fuzz_corpus_safetensors)
add_test(NAME protocol_fuzz_safetensors_header
  COMMAND sh -c "${CMAKE_COMMAND} --build '${PROJECT_BINARY_DIR}' --target fuzz_safetensors_header >/dev/null && mkdir -p '${fuzz_corpus}' && '${fuzz_bin}' -max_total_time=10 -timeout=5 -rss_limit_mb=2048 '${fuzz_corpus}' '${PROJECT_SOURCE_DIR}/tests/protocol/fuzz_seeds/safetensors_header'")
set_tests_properties(protocol_fuzz_safetensors_header PROPERTIES LABELS slow TIMEOUT 600)
