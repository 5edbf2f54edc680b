// Two vectors stored as bf16 at once, generic over an Ops type (simd/ops_*.h): one conversion and one store
// where the Ops type has them (AVX-512 with AVX512_BF16), else two single stores. Used by the GEMM tile
// stores and the softmax's bf16 weights; include only from the per-ISA kernel files.
#pragma once

#include <cstdint>

namespace dinov3::cpu {
namespace {

// Ops types that store two vectors as bf16 in one go (AVX-512 with AVX512_BF16).
template <class O>
concept HasBf16Pair = requires(uint16_t* p, typename O::V v) { O::store_bf16_two(p, v, v); };

// lo then hi (2 x O::kLanes values) as bf16 at p: the Ops type's pair store, or two single ones.
template <class O>
inline void store_bf16_pair(uint16_t* p, typename O::V lo, typename O::V hi) {
  if constexpr (HasBf16Pair<O>) {
    O::store_bf16_two(p, lo, hi);
  } else {
    O::store_bf16_first(p, lo, O::kLanes);
    O::store_bf16_first(p + O::kLanes, hi, O::kLanes);
  }
}

}  // namespace
}  // namespace dinov3::cpu
