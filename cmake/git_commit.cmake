# Run at every build (the dinov3_git_commit target): writes OUTPUT, a header defining DINOV3_GIT_COMMIT as
# the short hash of SOURCE_DIR's HEAD, with "-dirty" when tracked files differ from it, or "unknown" outside a
# git checkout. The file is rewritten only when that text changes, so an unchanged commit recompiles nothing,
# and a new commit (or an edit) reaches the reports without a fresh cmake configure.
execute_process(COMMAND git rev-parse --short HEAD WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT commit)
  set(commit "unknown")
else()
  execute_process(COMMAND git status --porcelain --untracked-files=no WORKING_DIRECTORY ${SOURCE_DIR}
                  OUTPUT_VARIABLE changes OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
  if(rc EQUAL 0 AND changes)
    string(APPEND commit "-dirty")
  endif()
endif()
set(text "#define DINOV3_GIT_COMMIT \"${commit}\"\n")
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} old)
else()
  set(old "")
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUTPUT} "${text}")
endif()
