# merger_mpi_merge: `wsm merge` as one process and under `mpirun -np 2` / `-np 3` on this machine
# (tests/merger/mpi_merge_test.py): byte-identical outputs in every format and dtype, values against
# numpy, Hugging Face directories read back by the `safetensors` package, failing ranks.
if(WSM_HAVE_MPI AND MPIEXEC_EXECUTABLE)
  add_test(NAME merger_mpi_merge
    COMMAND ${WSM_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/mpi_merge_test.py $<TARGET_FILE:wsm> ${MPIEXEC_EXECUTABLE}
            ${PROJECT_BINARY_DIR}/mpi_merge_test)
else()
  # CI installs Open MPI (tools/install-deps.sh): its absence is a failure, not a skip.
  add_test(NAME merger_mpi_merge
    COMMAND sh -c "echo 'Open MPI was not found when CMake ran: apt-get install libopenmpi-dev openmpi-bin'; exit 1")
endif()
set_tests_properties(merger_mpi_merge PROPERTIES TIMEOUT 600 LABELS slow)
