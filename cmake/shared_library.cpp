// libdinov3.so is the static archive linked whole (cmake/CMakeLists.txt); a shared library target needs
// one source of its own, and this is it.
