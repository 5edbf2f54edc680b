# Sourced by the scripts that configure a build: new build trees use Ninja when it is installed
# (scripts/install_deps.sh installs it). On two cores it kept both busy where make's per-target order left
# one idle: a Release build took 330 s instead of 422 s (the make run partly beside another job). A tree
# configured before keeps its generator, and CMAKE_GENERATOR set by the caller wins.
if [ -z "${CMAKE_GENERATOR:-}" ] && command -v ninja >/dev/null 2>&1; then
  export CMAKE_GENERATOR=Ninja
fi
