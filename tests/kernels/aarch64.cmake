# The CPU backends build on aarch64 (Grace): tools/check-aarch64.sh compiles kernels/' and trainer/'s
# CPU sources with the cross compiler (about 15 s of CPU). Registered when the compiler is installed
# (tools/install-deps.sh installs it).
find_program(WSM_AARCH64_CXX aarch64-linux-gnu-g++)
if(WSM_AARCH64_CXX)
  add_test(NAME kernels.aarch64_cpu_build COMMAND ${PROJECT_SOURCE_DIR}/tools/check-aarch64.sh)
  set_tests_properties(kernels.aarch64_cpu_build PROPERTIES
    ENVIRONMENT "CXX_AARCH64=${WSM_AARCH64_CXX};JOBS=2" TIMEOUT 600 LABELS "fast")
endif()
