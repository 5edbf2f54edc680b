// The library's arithmetic does not depend on the floating-point environment the application set. An
// application (or a library it loaded: one built with -ffast-math sets FTZ/DAZ for the whole process) may
// change the rounding mode (fesetround), flush subnormals or unmask exceptions (feenableexcept); the library's
// code on the caller's thread runs in the default environment instead, so its numbers are the same in any
// program (preprocessing's coefficients, RoPE's sines, weight rounding, the reference backend's loops), and an
// operation inside it that raises a flag (a NaN compared, an int8 conversion out of range) does not trap. The
// caller's environment is given back afterwards. Kernels run on the CPU backend's thread pool, whose tasks set
// their own control word from the same bits (thread_pool.cpp).
#pragma once

#include <cfenv>

#if defined(__SSE__)
#include <xmmintrin.h>  // _mm_getcsr (SSE, part of baseline x86-64)
#endif

namespace dinov3 {

// x86's MXCSR control bits, the SSE/AVX part of the environment.
constexpr unsigned kMxcsrFlushDenormals = 0x8040;   // FTZ (bit 15) | DAZ (bit 6)
constexpr unsigned kMxcsrRoundingControl = 0x6000;  // RC (bits 13-14); 00 = round to nearest even
constexpr unsigned kMxcsrExceptionMasks = 0x1F80;   // every exception masked (bits 7-12)

// True when the calling thread's environment is the default one: round to nearest, subnormals kept, no
// exception trapping.
inline bool float_env_is_default() {
  if (std::fegetround() != FE_TONEAREST) return false;
#if defined(__SSE__)
  const unsigned csr = _mm_getcsr();
  if ((csr & kMxcsrFlushDenormals) != 0 || (csr & kMxcsrExceptionMasks) != kMxcsrExceptionMasks) return false;
#endif
#if defined(__GLIBC__)
  if (fegetexcept() != 0) return false;  // the x87 unit's traps (glibc)
#endif
  return true;
}

// The default environment for this object's lifetime, the caller's restored (with its exception flags) at
// the end. Free when the environment is already the default; nests.
class ScopedDefaultFloatEnv {
 public:
  ScopedDefaultFloatEnv() : changed_(!float_env_is_default()) {
    if (changed_) {
      std::fegetenv(&saved_);
      std::fesetenv(FE_DFL_ENV);
    }
  }
  ~ScopedDefaultFloatEnv() {
    if (changed_) std::fesetenv(&saved_);
  }
  ScopedDefaultFloatEnv(const ScopedDefaultFloatEnv&) = delete;
  ScopedDefaultFloatEnv& operator=(const ScopedDefaultFloatEnv&) = delete;

 private:
  bool changed_;
  std::fenv_t saved_{};
};

}  // namespace dinov3
