// AMX building blocks of the bfloat16 Newton-Schulz loop (bf16gemm.cpp): operands packed into tile order and the
// 32 x 32 block product on the tile registers (TDPBF16PS: bfloat16 pairs multiplied and summed into float32).
// A panel's step is one 32 x 32 block: the A operand's is the block itself (so a matrix packed as an A operand is
// also "blocked": 32 x 32 blocks, each contiguous), the B operand's the block in VNNI order (vnni()).
//
// Compiled where the build machine has AMX-BF16 (-march=native defines __AMX_TILE__ and __AMX_BF16__, which then
// defines MLX_OPTIM_AMX); usable at run time once available() is true (Linux hands a process the tile state only on
// request). Everything here works on whole 32 x 32 blocks: rows, columns and the summed dimension are padded with
// zeros to multiples of 32 (pack_a, and the callers' blocks), and the callers write back only a block's valid part.
//
// Packed layouts, for `steps` = padded k / 32 steps of 32 along the summed dimension:
//   A operand (m, k): panel p (rows 32p .. 32p + 31), step s at (p * steps + s) * 1024: two 16 x 32 row-major halves.
//   B operand (k, n): panel p (columns 32p .. 32p + 31), step s at (p * steps + s) * 1024: two halves of 16 columns,
//     row r of half h holding the pairs (b[32s + 2r][32p + 16h + c], b[32s + 2r + 1][32p + 16h + c]), c = 0 .. 15
//     (the pairs TDPBF16PS multiplies, "VNNI" order).

#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__linux__) && defined(__AMX_TILE__) && defined(__AMX_BF16__) && \
    defined(__AVX512BW__)
#define MLX_OPTIM_AMX 1

#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mlx_optim_amx {

constexpr int kBlock = 32;
constexpr size_t kStep = 1024;  // bfloat16 entries of one packed step of a panel (two 1 KiB tiles)

inline int padded(int n) { return (n + kBlock - 1) / kBlock * kBlock; }

// Linux's arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): false where the kernel refuses (or predates AMX)
inline bool available() {
  static const bool granted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return granted;
}

struct alignas(64) TileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t bytes_per_row[16];
  uint8_t rows[16];
};

// eight tiles of 16 rows x 64 bytes: 0-3 the float32 32 x 32 block, 4-5 A's two halves, 6-7 B's; per thread
inline void configure() {
  TileConfig c{};
  c.palette = 1;
  for (int t = 0; t < 8; ++t) c.bytes_per_row[t] = 64, c.rows[t] = 16;
  _tile_loadconfig(&c);
}

inline void release() { _tile_release(); }

// acc (32 x 32 float32, row-major) = A panel . B panel summed over `steps` packed steps
inline void block(const uint16_t* a, const uint16_t* b, int steps, float* acc) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int s = 0; s < steps; ++s, a += kStep, b += kStep) {
    _tile_loadd(4, a, 64);
    _tile_loadd(6, b, 64);
    _tile_loadd(5, a + 512, 64);
    _tile_loadd(7, b + 512, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, acc, 128);
  _tile_stored(1, acc + 16, 128);
  _tile_stored(2, acc + 512, 128);
  _tile_stored(3, acc + 528, 128);
}

// 64 bytes of VNNI pairs from two rows of 16: (r0[0], r1[0], r0[1], r1[1], ...)
inline void interleave(const uint16_t* r0, const uint16_t* r1, uint16_t* to) {
  const __m512i pairs = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1));
  _mm512_storeu_si512(to, _mm512_permutexvar_epi16(pairs, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)));
}

// A 32 x 32 bfloat16 block t (row-major) in the packed layouts: as a step of an A panel it is t itself; as a step of
// a B panel (t a k x n block) its VNNI order; as a step of a B panel of t^T, the VNNI order of t's transpose
inline void vnni(const uint16_t (*t)[kBlock], uint16_t* out) {
  for (int h = 0; h < 2; ++h)
    for (int r = 0; r < 16; ++r) interleave(t[2 * r] + 16 * h, t[2 * r + 1] + 16 * h, out + h * 512 + r * 32);
}

inline void transpose(const uint16_t (*t)[kBlock], uint16_t (*u)[kBlock]) {
  for (int r = 0; r < kBlock; ++r)
    for (int c = 0; c < kBlock; ++c) u[c][r] = t[r][c];
}

// panel p of the A operand of a (m, k) row-major matrix (row stride lda)
inline void pack_a(const uint16_t* a, int lda, int m, int k, int p, uint16_t* packed) {
  const int steps = padded(k) / kBlock;
  uint16_t* out = packed + size_t(p) * steps * kStep;
  for (int s = 0; s < steps; ++s, out += kStep)
    for (int r = 0; r < kBlock; ++r) {
      uint16_t* to = out + r * kBlock;  // the two 16-row halves of a step are the block's rows in order
      const int row = p * kBlock + r, k0 = s * kBlock, count = row < m ? std::max(0, std::min(kBlock, k - k0)) : 0;
      if (count) std::memcpy(to, a + size_t(row) * lda + k0, sizeof(uint16_t) * count);
      std::memset(to + count, 0, sizeof(uint16_t) * (kBlock - count));
    }
}

}  // namespace mlx_optim_amx

#endif
