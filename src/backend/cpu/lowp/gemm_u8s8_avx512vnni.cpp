// int8 GEMM micro-tile on AVX512_VNNI (compiled with -mavx512vnni on top of AVX-512F/BW/DQ/VL; reached only
// through select_lowp_kernels after the runtime check). Tile 14x32: 28 zmm int32 accumulators, one vpdpbusd
// (four multiply-adds per lane) per accumulator and K quad. The tile itself: gemm_u8s8_tile.h.
#include "backend/cpu/lowp/gemm_u8s8_tile.h"

namespace dinov3::cpu::lowp {
namespace {

constexpr int kMr = 14;

struct DotVnni {
  using A = __m512i;
  using B = __m512i;
  static B load_b(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static A broadcast_a(int32_t quad) { return _mm512_set1_epi32(quad); }
  static __v16si step(__v16si acc, A a, B b) { return (__v16si)_mm512_dpbusd_epi32((__m512i)acc, a, b); }
};

}  // namespace

void gemm_u8s8_14x32_avx512vnni(const LowpTile& t) {
  dispatch_u8s8_rows<DotVnni>(t, std::make_integer_sequence<int, kMr>{});
}

}  // namespace dinov3::cpu::lowp
