# A Hugging Face user's path end to end (tests/protocol/python_hf/test_hf_trainer.py): PyPI torch and
# transformers in a venv (tools/python-venv.sh hf), a tiny GPT-2 trained by transformers.Trainer,
# streamed by wsm_client.hf into `wsm serve --format hf --eval-cmd`, swept by `wsm compare sweep
# --baseline` with tools/examples/hf_eval.py. torch from PyPI is large, so the venv lives in a cache
# kept between CI runs on one machine: $WSM_VENV_CACHE, default ~/.cache/wsm. A venv that cannot
# be built fails the fixture, and so the test (never a skip).
if(NOT WSM_SANITIZE)
  if(DEFINED ENV{WSM_VENV_CACHE})
    set(hf_venv $ENV{WSM_VENV_CACHE}/py-venv-hf)
  else()
    set(hf_venv $ENV{HOME}/.cache/wsm/py-venv-hf)
  endif()
  add_test(NAME python_hf_venv COMMAND bash ${PROJECT_SOURCE_DIR}/tools/python-venv.sh hf ${hf_venv})
  set_tests_properties(python_hf_venv PROPERTIES FIXTURES_SETUP py_venv_hf TIMEOUT 1800 LABELS "python")
  add_test(NAME python_hf_trainer
           COMMAND ${CMAKE_COMMAND} -E env ${hf_venv}/bin/python -m unittest -v test_hf_trainer
           WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR}/python_hf)
  set_tests_properties(python_hf_trainer PROPERTIES
    FIXTURES_REQUIRED py_venv_hf TIMEOUT 900 LABELS "python"
    ENVIRONMENT "WSM_BIN=$<TARGET_FILE:wsm>;WSM_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMP_NUM_THREADS=1;HF_HUB_OFFLINE=1;TRANSFORMERS_OFFLINE=1")
endif()
