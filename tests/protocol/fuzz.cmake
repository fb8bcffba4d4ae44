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

# libFuzzer targets for the safetensors header parser and the scoring-output parser, built with
# clang++ -fsanitize=fuzzer when clang is installed; a CTest labelled `slow` builds each and fuzzes
# for 10 s. Part of `all` only with -DWSM_FUZZ=ON. Without clang nothing is defined.
find_program(WSM_CLANGXX NAMES clang++ clang++-16 clang++-15 clang++-14)
find_path(WSM_NLOHMANN_INCLUDE nlohmann/json.hpp)
if(NOT WSM_CLANGXX OR NOT WSM_NLOHMANN_INCLUDE)
  message(STATUS "wsm: clang++ not found, skipping the safetensors header and score parser fuzzers")
  return()
endif()

# A libFuzzer target compiled on its own by clang++ from the sources given (they must need no more
# than the include directories given), its `fuzz_<name>` custom target, and a CTest `slow` that
# builds it and fuzzes for 10 s from the seeds in fuzz_seeds/<name>/ (new corpus entries go to the
# build tree; the checked-in seeds are read only).
function(wsm_standalone_fuzzer name)
  cmake_parse_arguments(F "" "" "SOURCES;DEPENDS;INCLUDES" ${ARGN})
  set(bin ${PROJECT_BINARY_DIR}/fuzz_${name})
  list(TRANSFORM F_INCLUDES PREPEND -I)
  add_custom_command(OUTPUT ${bin}
    COMMAND ${WSM_CLANGXX} -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -I${PROJECT_SOURCE_DIR} ${F_INCLUDES} -I${WSM_NLOHMANN_INCLUDE} ${F_SOURCES} -o ${bin}
    DEPENDS ${F_SOURCES} ${F_DEPENDS}
    COMMENT "clang++ -fsanitize=fuzzer fuzz_${name}"
    VERBATIM)
  if(WSM_FUZZ)
    add_custom_target(fuzz_${name} ALL DEPENDS ${bin})
  else()
    add_custom_target(fuzz_${name} DEPENDS ${bin})
  endif()
  set(corpus ${PROJECT_BINARY_DIR}/fuzz_corpus_${name})
  add_test(NAME protocol_fuzz_${name}
    COMMAND sh -c "${CMAKE_COMMAND} --build '${PROJECT_BINARY_DIR}' --target fuzz_${name} >/dev/null && mkdir -p '${corpus}' && '${bin}' -max_total_time=10 -timeout=5 -rss_limit_mb=2048 '${corpus}' '${PROJECT_SOURCE_DIR}/tests/protocol/fuzz_seeds/${name}'")
  set_tests_properties(protocol_fuzz_${name} PROPERTIES LABELS slow TIMEOUT 600)
endfunction()

wsm_standalone_fuzzer(safetensors_header
  SOURCES ${PROJECT_SOURCE_DIR}/tests/protocol/fuzz_safetensors_header.cpp
          ${PROJECT_SOURCE_DIR}/protocol/formats/safetensors_header.cpp
          ${PROJECT_SOURCE_DIR}/protocol/core/dtype.cpp
          ${PROJECT_SOURCE_DIR}/protocol/core/printable.cpp
  DEPENDS ${PROJECT_SOURCE_DIR}/protocol/formats/include/wsm/formats/safetensors_header.h
          ${PROJECT_SOURCE_DIR}/protocol/formats/include/wsm/formats/checkpoint.h
  INCLUDES ${PROJECT_SOURCE_DIR}/protocol/core/include ${PROJECT_SOURCE_DIR}/protocol/formats/include)

# The scoring-output parser (tests/protocol/fuzz_score_parser.cpp): what an `--eval-cmd` prints,
# parsed by tools/compare/score_parser.cpp, which needs only nlohmann's JSON.
wsm_standalone_fuzzer(score_parser
  SOURCES ${PROJECT_SOURCE_DIR}/tests/protocol/fuzz_score_parser.cpp ${PROJECT_SOURCE_DIR}/tools/compare/score_parser.cpp
  DEPENDS ${PROJECT_SOURCE_DIR}/tools/compare/score_parser.h)
