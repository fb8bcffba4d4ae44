# Sharded jobs from Python (issue 17): the DTensor placement -> offsets rule against torch.chunk,
# and a 4-process torchrun job (gloo, CPU) on two "nodes" streaming to two `wsm serve` processes.
# Both need Debian's python3-torch (tools/install-deps.sh), h5py and the generated wsm_pb2.
set(wsm_sharded_env PYTHONPATH=${PROJECT_SOURCE_DIR}/protocol/python WSM_PB2_DIR=${PROJECT_BINARY_DIR}/gen/python)
add_test(NAME merger_sharded_offsets
         COMMAND ${CMAKE_COMMAND} -E env ${wsm_sharded_env} ${WSM_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/sharded_offsets.py)
add_test(NAME merger_sharded_torchrun
         COMMAND ${CMAKE_COMMAND} -E env ${wsm_sharded_env} OMP_NUM_THREADS=1
                 ${WSM_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/sharded_torchrun.py --wsm $<TARGET_FILE:wsm>
                 --out ${PROJECT_BINARY_DIR}/test-sharded-torchrun)
set_tests_properties(merger_sharded_offsets PROPERTIES LABELS fast TIMEOUT 120)
set_tests_properties(merger_sharded_torchrun PROPERTIES LABELS slow TIMEOUT 600)
