// The fast CPU backend ("cpu", the default): packed-panel GEMMs with fused epilogues, fused attention,
// AVX-512 / AVX2+FMA / scalar kernels chosen at run time, one thread pool per backend.
#pragma once
#include <memory>

#include "backend/cpu/kernels.h"
#include "dinov3/backend.h"

namespace dinov3 {

// Uses the best instruction set the CPU and OS support; DINOV3_CPU_ISA=avx512|avx2|scalar asks for a
// lower one (a higher one than the machine has is clamped, and device() says so).
// options.precision bf16 / int8 runs the linear layers and attention's products on lowp/ (AVX512_BF16 /
// AVX512_VNNI where present); DINOV3_CPU_NO_BF16=1 / DINOV3_CPU_NO_VNNI=1 force the fallbacks (same bf16 bits).
Result<std::unique_ptr<Backend>> create_cpu_backend(const BackendOptions& options);

// Exactly `isa` (kUnsupported if this machine cannot run it); ignores DINOV3_CPU_ISA. For tests/benchmarks.
Result<std::unique_ptr<Backend>> create_cpu_backend_for_isa(const BackendOptions& options, cpu::Isa isa);

}  // namespace dinov3
