#pragma once
// Element loads and stores between a tensor's dtype and the accumulation type, for CPU loops that the compiler
// vectorizes. c10::Half / c10::BFloat16's own conversions keep GCC from vectorizing the loops they sit in. These
// work on the raw 16 bits with integer and float operations only, branch-free, and give the same results:
// exact widening; narrowing rounds to nearest even, overflows to infinity, keeps NaN a NaN.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <bit>
#include <cstdint>

namespace pygan {

template <typename acc, typename T>
inline acc load(const T* p, int64_t i) {
  return static_cast<acc>(p[i]);
}

template <typename T, typename acc>
inline void store(T* p, int64_t i, acc v) {
  p[i] = static_cast<T>(v);
}

// bfloat16: the high half of a float.
template <>
inline float load<float, c10::BFloat16>(const c10::BFloat16* p, int64_t i) {
  return std::bit_cast<float>(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(p)[i]) << 16);
}

template <>
inline void store<c10::BFloat16, float>(c10::BFloat16* p, int64_t i, float v) {
  const uint32_t u = std::bit_cast<uint32_t>(v);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;  // to nearest, ties to even
  const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  reinterpret_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(nan ? 0x7FC0u : rounded);
}

// IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
template <>
inline float load<float, c10::Half>(const c10::Half* p, int64_t i) {
  const uint32_t h = reinterpret_cast<const uint16_t*>(p)[i];
  const uint32_t sign = (h & 0x8000u) << 16, em = h & 0x7FFFu;
  const uint32_t normal = (em << 13) + ((127u - 15u) << 23);       // rebias the exponent
  const uint32_t special = (em << 13) | 0x7F800000u;               // infinity / NaN (payload kept)
  const float subnormal = static_cast<float>(static_cast<int32_t>(em)) * 0x1.0p-24f;  // and zero: exact
  const uint32_t bits = em >= 0x7C00u ? special : em < 0x0400u ? std::bit_cast<uint32_t>(subnormal) : normal;
  return std::bit_cast<float>(sign | bits);
}

template <>
inline void store<c10::Half, float>(c10::Half* p, int64_t i, float v) {
  // Rounding by float addition: adding 2^(e+13) (e: v's exponent, at least -14) to |v| leaves exactly the bits a
  // half keeps, rounded to nearest even by the FPU; large values were pushed to infinity by the first scaling.
  const uint32_t u = std::bit_cast<uint32_t>(v);
  const uint32_t twice = u + u, sign = u & 0x80000000u;
  const float magnitude = (std::bit_cast<float>(u & 0x7FFFFFFFu) * 0x1.0p+112f) * 0x1.0p-110f;
  uint32_t bias = twice & 0xFF000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  const uint32_t r = std::bit_cast<uint32_t>(std::bit_cast<float>((bias >> 1) + 0x07800000u) + magnitude);
  const uint32_t finite = ((r >> 13) & 0x7C00u) + (r & 0x0FFFu);
  const uint32_t bits = twice > 0xFF000000u ? 0x7E00u : finite;  // NaN stays NaN
  reinterpret_cast<uint16_t*>(p)[i] = static_cast<uint16_t>((sign >> 16) | bits);
}

}  // namespace pygan
