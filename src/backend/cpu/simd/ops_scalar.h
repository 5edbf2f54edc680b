// One-lane "vector" operations in portable C++, so the generic kernels also build as the scalar fallback.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/lowp/bf16.h"

namespace dinov3::cpu {
namespace {

struct OpsScalar {
  using V = float;
  static constexpr int kLanes = 1;

  static V zero() { return 0.0f; }
  static V set1(float v) { return v; }
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V broadcast(const float* p) { return *p; }
  static V load_first(const float* p, int n) { return n > 0 ? *p : 0.0f; }
  static V load_first_or(const float* p, int n, float fill) { return n > 0 ? *p : fill; }
  static void store_first(float* p, V v, int n) {
    if (n > 0) *p = v;
  }
  static V keep_first(V v, int n) { return n > 0 ? v : 0.0f; }

  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  // Separate multiply and add: without -mfma std::fma is a slow library call.
  static V fmadd(V a, V b, V c) { return a * b + c; }
  static V fnmadd(V a, V b, V c) { return c - a * b; }
  static V max(V a, V b) { return std::max(a, b); }
  static V min(V a, V b) { return std::min(a, b); }
  static V abs(V a) { return std::fabs(a); }
  static V round_nearest(V a) { return std::nearbyint(a); }
  // A NaN n (exp of NaN) gives NaN: converting it to int, defined in the vector ISAs, is undefined in C++.
  static V scale_pow2(V p, V n) { return n == n ? std::ldexp(p, static_cast<int>(n)) : n; }
  static V select_lt(V a, V b, V x, V y) { return a < b ? x : y; }
  // table[k], k the low four bits of index's bit pattern (as OpsAvx512::lookup16).
  static V lookup16(const float* table, V index) {
    uint32_t bits;
    std::memcpy(&bits, &index, sizeof(bits));
    return table[bits & 15u];
  }
  static V floor(V a) { return std::floor(a); }
  static float reduce_add(V a) { return a; }
  static float reduce_max(V a) { return a; }
  static V load_bf16_first(const uint16_t* p, int n) { return n > 0 ? lowp::float_from_bf16(*p) : 0.0f; }
  static void store_bf16_first(uint16_t* p, V v, int n) {
    if (n > 0) *p = lowp::bf16_from_float(v);
  }
};

}  // namespace
}  // namespace dinov3::cpu
