# tools/plot.cpp belongs to the `wsm` executable, not to a library: its unit test compiles it in.
# (Not named test_*.cpp so the generic glob in tests/CMakeLists.txt does not pick it up alone.)
wsm_add_test(schedules_plot
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/plot_unittest.cpp ${PROJECT_SOURCE_DIR}/tools/plot.cpp
  LIBS ${WSM_ALL_LIBS} PkgConfig::CAIRO)
