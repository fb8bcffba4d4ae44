# The Python client (protocol/python, `pip install`ed into a venv the way users install it) against
# a real `wsm serve`: tests/protocol/python/test_*.py, twice: with current PyPI releases of its
# dependencies and with Debian's python3-* packages (tools/python-venv.sh). The generated protobuf
# module ships inside the package; test_package.py checks it against protocol/wire/wsm.proto with protoc.
# Not in the sanitizer pass (the daemon it starts is the same code; the venvs would be built twice).
if(NOT WSM_SANITIZE)
  foreach(flavour pypi debian)
    set(venv ${PROJECT_BINARY_DIR}/py-venv-${flavour})
    add_test(NAME python_client_venv_${flavour}
             COMMAND bash ${PROJECT_SOURCE_DIR}/tools/python-venv.sh ${flavour} ${venv})
    set_tests_properties(python_client_venv_${flavour} PROPERTIES
      FIXTURES_SETUP py_venv_${flavour} TIMEOUT 900 LABELS "python")
    add_test(NAME python_client_${flavour}
             # (through cmake -E env: the venv's python exists only once the fixture made it)
             COMMAND ${CMAKE_COMMAND} -E env ${venv}/bin/python -m unittest discover -v -s ${CMAKE_CURRENT_LIST_DIR}/python
             WORKING_DIRECTORY ${PROJECT_BINARY_DIR})
    set(expect "")
    if(flavour STREQUAL "debian")
      set(expect "WSM_EXPECT_TORCH=1")   # python3-torch (install-deps.sh); PyPI's torch is too large for CI
    else()
      set(expect "WSM_EXPECT_SAFETENSORS=1")  # Debian 12 has no python3-safetensors
    endif()
    set_tests_properties(python_client_${flavour} PROPERTIES
      FIXTURES_REQUIRED py_venv_${flavour} TIMEOUT 900 LABELS "python"
      ENVIRONMENT "WSM_BIN=$<TARGET_FILE:wsm>;WSM_SOURCE_DIR=${PROJECT_SOURCE_DIR};PROTOC=$<TARGET_FILE:protobuf::protoc>;WSM_EXPECT_INSTALLED=1;${expect}")
  endforeach()
endif()
