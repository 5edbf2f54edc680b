// What the CPU is and which instruction sets the OS lets us use (cpuid and XCR0).
#pragma once

#include <string>
#include <string_view>

#include "dinov3/machine.h"  // cpu_brand_string, cpu_core_count

namespace dinov3 {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512_bf16 = false, avx512_vnni = false;
};

// Raw capabilities: cpuid bits, masked by what XCR0 says the OS saves (YMM for AVX, ZMM+opmask for AVX-512).
const CpuFeatures& cpu_features();
// The cpuid brand field as people write it (what cpu_brand_string returns): vendors pad it with spaces on
// either side, and some put runs of them inside; those go, and the text ends at the first NUL.
std::string tidy_cpu_brand(std::string_view raw);

}  // namespace dinov3
