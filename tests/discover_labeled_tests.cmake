# Run after a test executable is built (cmake -P): asks it for its tests and their labels
# (--dinov3_list_labels) and writes CTEST_FILE, which adds each test to CTest with those labels.
# Inputs: TEST_EXECUTABLE, CTEST_FILE, TEST_ENVIRONMENT (one NAME=VALUE), WORKING_DIR.
cmake_minimum_required(VERSION 3.22)  # the project's policies in script mode too (IN_LIST)
execute_process(COMMAND "${TEST_EXECUTABLE}" --dinov3_list_labels
                OUTPUT_VARIABLE listing ERROR_VARIABLE problems RESULT_VARIABLE rc TIMEOUT 120)
if(NOT rc EQUAL 0)
  file(REMOVE "${CTEST_FILE}")
  message(FATAL_ERROR "${TEST_EXECUTABLE}: cannot list its tests with labels (exit ${rc}):\n${problems}")
endif()
include(${CMAKE_CURRENT_LIST_DIR}/test_cost.cmake)
set(script "")
string(REPLACE "\n" ";" lines "${listing}")
foreach(line IN LISTS lines)
  if(line STREQUAL "")
    continue()
  endif()
  string(FIND "${line}" "\t" tab)
  string(SUBSTRING "${line}" 0 ${tab} name)
  math(EXPR after "${tab} + 1")
  string(SUBSTRING "${line}" ${after} -1 labels)
  string(REPLACE "," ";" labels "${labels}")
  dinov3_test_cost("${labels}" cost)
  string(APPEND script
         "add_test([==[${name}]==] \"${TEST_EXECUTABLE}\" [==[--gtest_filter=${name}]==])\n"
         "set_tests_properties([==[${name}]==] PROPERTIES LABELS [==[${labels}]==] COST ${cost} "
         "ENVIRONMENT [==[${TEST_ENVIRONMENT}]==] WORKING_DIRECTORY [==[${WORKING_DIR}]==])\n")
endforeach()
file(WRITE "${CTEST_FILE}" "${script}")
