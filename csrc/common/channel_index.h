#pragma once
// The channel of consecutive flat elements of a dense tensor of shape (N, C, S) ("channels first") or (N*S, C)
// ("channels last"), for the CUDA element loops: a division pair places a cursor on an element, then each step to
// the next element is a compare-and-select. Computing (i / S) % C for every element cost two 64-bit integer
// divisions per element — a software routine of dozens of instructions on the GPU, several times the arithmetic
// of the element itself in these memory-bound passes.
#include "common/host_device.h"

#include <cstdint>

namespace pygan {

// a / b for b > 0, through 32-bit division when both fit (the usual case: a hardware-friendly path on the GPU).
PYGAN_HD uint64_t div_u64(uint64_t a, uint64_t b) {
  return ((a | b) >> 32) == 0 ? static_cast<uint64_t>(static_cast<uint32_t>(a) / static_cast<uint32_t>(b)) : a / b;
}

struct ChannelIndex {
  int64_t C;
  int64_t S;  // consecutive elements sharing a channel: the plane size channels-first, 1 channels-last

  static ChannelIndex of(int64_t C, int64_t S, bool channels_last) { return {C, channels_last ? 1 : S}; }

  struct Cursor {
    int64_t c, s;  // the element's channel, and its position among the S consecutive elements of that channel
    int64_t C, S;
    PYGAN_HD void next() {
      if (++s == S) {
        s = 0;
        if (++c == C) c = 0;
      }
    }
  };

  // The cursor on flat element i (i >= 0).
  PYGAN_HD Cursor at(int64_t i) const {
    const uint64_t plane = S == 1 ? static_cast<uint64_t>(i) : div_u64(static_cast<uint64_t>(i), static_cast<uint64_t>(S));
    const uint64_t c = plane - div_u64(plane, static_cast<uint64_t>(C)) * static_cast<uint64_t>(C);
    return {static_cast<int64_t>(c), i - static_cast<int64_t>(plane) * S, C, S};
  }
};

}  // namespace pygan
