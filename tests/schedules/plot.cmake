# tools/plot.cpp lives in the wsm_tools library beside the `wsm` commands that draw.
# (Not named test_*.cpp so the generic glob in tests/CMakeLists.txt does not pick it up alone.)
wsm_add_test(schedules_plot
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/plot_unittest.cpp
  LIBS wsm_tools PkgConfig::CAIRO)
