// common/channel_index.h (the CUDA element loops' channel cursor), on the host: every cursor placement and every
// step agree with (i / S) % C, for small shapes exhaustively and near the 32-bit boundary of the division.
#include "common/channel_index.h"

#include <cstdint>
#include <iostream>

#include "check.h"

int main() {
  using pygan::ChannelIndex;
  for (bool channels_last : {false, true})
    for (int64_t C = 1; C <= 9; ++C)
      for (int64_t S = 1; S <= 9; ++S) {
        const int64_t N = 3, numel = N * C * S;
        const ChannelIndex ch = ChannelIndex::of(C, S, channels_last);
        auto channel = [&](int64_t i) { return channels_last ? i % C : (i / S) % C; };
        for (int64_t start = 0; start < numel; ++start) {
          ChannelIndex::Cursor cur = ch.at(start);
          for (int64_t i = start; i < numel + 2 * C * S; ++i, cur.next()) CHECK(cur.c == channel(i % numel));
        }
      }
  // Indices past 2^32 take the 64-bit division; S, C of realistic sizes.
  for (int64_t S : {int64_t(1), int64_t(7), int64_t(4096), int64_t(65536)})
    for (int64_t C : {int64_t(3), int64_t(512), int64_t(1000)})
      for (int64_t i : {int64_t(0), int64_t(4294967295LL) - 5, int64_t(4294967296LL) + 3, int64_t(1) << 40}) {
        ChannelIndex::Cursor cur = ChannelIndex::of(C, S, false).at(i);
        for (int64_t k = 0; k < 3 * S; ++k, cur.next()) CHECK(cur.c == ((i + k) / S) % C);
      }
  CHECK(pygan::div_u64(uint64_t(1) << 33, 3) == (uint64_t(1) << 33) / 3);
  CHECK(pygan::div_u64(4294967295ULL, 7) == 4294967295ULL / 7);
  if (failures() == 0) std::cout << "channel_index: ok\n";
  return failures();
}
