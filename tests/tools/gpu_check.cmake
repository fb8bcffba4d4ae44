# tools/gpu-check.sh --kit without a GPU, from this build's binaries: the GPU rows say "no GPU", the CPU
# rows pass with parsed figures (tests/tools/gpu_check_no_gpu.sh). The CUDA kit itself is built by hand
# (tools/gpu-kit.sh) and runs on a lent GPU machine, never in CI.
if(TARGET kernels_merge_cuda AND TARGET kernels_cublas_loader AND TARGET kernels_merge_cpu AND TARGET trainer_cuda)
  add_test(NAME tools.gpu_check_kit_no_gpu
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/gpu_check_no_gpu.sh ${PROJECT_BINARY_DIR})
  set_tests_properties(tools.gpu_check_kit_no_gpu PROPERTIES TIMEOUT 300 LABELS "slow" SKIP_RETURN_CODE 77)
endif()
