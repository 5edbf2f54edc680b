# The CTest COST of a test from its labels, one rule for tests/CMakeLists.txt and
# discover_labeled_tests.cmake: a test labelled slow starts first in a parallel run. A fresh build has no
# timings for CTest to order by, so it would start tests by number and leave a minutes-long one running
# alone at the end.
function(dinov3_test_cost labels out)
  if("slow" IN_LIST labels)
    set(${out} 1000 PARENT_SCOPE)
  else()
    set(${out} 0 PARENT_SCOPE)
  endif()
endfunction()
