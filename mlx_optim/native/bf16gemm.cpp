// A bfloat16 GEMM for MLX's CPU backend through MKL's cblas_gemm_bf16bf16f32 (AMX / AVX512-BF16 where present), the
// bfloat16 Newton-Schulz loop built on it, and float32 Gram matrices u u^T through the SYRK of the BLAS that
// mlx_optim.blas loaded for MLX.
//
// Built into the same extension as adam8.cpp (mlx_optim/native/__init__.py). MKL is not linked: its runtime
// library (libmkl_rt, pip package `mkl`) is opened with dlopen by bf16gemm_init(path), called once from Python.
//
// bf16_gemm(a, b, c, alpha, beta, out_dtype) = round(alpha * (a @ b) + beta * c): a (m, k) and b (k, n) bfloat16,
// c (m, n) bfloat16 or float32 or absent, the products accumulated in float32 and the result rounded once to
// out_dtype (bfloat16 or float32), as torch's CPU mm / addmm on bfloat16 tensors.

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <mutex>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

#include "amx.h"

namespace mx = mlx::core;
namespace nb = nanobind;

namespace {

// MKL's prototype (mkl_cblas.h, LP64 interface of mkl_rt): MKL_INT is int, MKL_BF16 is uint16_t.
using GemmBf16 = void (*)(int layout, int trans_a, int trans_b, int m, int n, int k, float alpha, const uint16_t* a,
                          int lda, const uint16_t* b, int ldb, float beta, float* c, int ldc);
constexpr int kRowMajor = 101;
constexpr int kNoTrans = 111;
constexpr int kTrans = 112;

GemmBf16 gemm_bf16 = nullptr;

// dlopen MKL's runtime library at `path`; "" on success, else the reason.
std::string bf16gemm_init(const std::string& path) {
  if (gemm_bf16 != nullptr) return "";
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    return std::string("dlopen failed: ") + (err ? err : path);
  }
  void* sym = dlsym(handle, "cblas_gemm_bf16bf16f32");
  if (sym == nullptr) return "no cblas_gemm_bf16bf16f32 in " + path;
  gemm_bf16 = reinterpret_cast<GemmBf16>(sym);
  return "";
}

// How a 2-D operand reaches the GEMM: its own memory (row-major, or its transpose row-major) or a dense copy.
struct Operand {
  bool copy;  // not a plain (transposed) layout: copied into a dense row-major temporary by the task
  int trans;
  int ld;
};

Operand layout_of(const mx::array& x) {
  const int64_t rows = x.shape(0), cols = x.shape(1);
  const int64_t s0 = x.strides()[0], s1 = x.strides()[1];
  if ((s1 == 1 || cols == 1) && s0 >= std::max<int64_t>(cols, 1)) return {false, kNoTrans, static_cast<int>(s0)};
  if ((s0 == 1 || rows == 1) && s1 >= std::max<int64_t>(rows, 1)) return {false, kTrans, static_cast<int>(s1)};
  return {true, kNoTrans, static_cast<int>(std::max<int64_t>(cols, 1))};
}

template <typename T>
void gather(const mx::array& src, const T* from, T* to) {  // dense row-major copy of a 2-D array (any strides)
  const int64_t rows = src.shape(0), cols = src.shape(1);
  const int64_t s0 = src.strides()[0], s1 = src.strides()[1];
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) to[i * cols + j] = from[i * s0 + j * s1];
}

inline uint16_t bf16_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
  return static_cast<uint16_t>(nan ? ((bits >> 16) | 0x40u) : rounded);
}

// float32 -> bfloat16, round to nearest even (NaN stays a quiet NaN), as MLX's and torch's conversions; branch-free
// so the loop vectorizes
void round_bf16(const float* from, uint16_t* to, size_t count) {
  for (size_t i = 0; i < count; ++i) to[i] = bf16_bits(from[i]);
}

inline float to_float(float x) { return x; }

inline float to_float(mx::float16_t x) { return static_cast<float>(x); }

inline float to_float(uint16_t x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// out = round_bf16(alpha * acc + beta * c) with c bfloat16 (out may alias c): a GEMM's scaling and C term applied
// after MKL's plain product, in one pass (measured at 2048: MKL with alpha != 1 or beta != 0 took 14-15 ms against
// 11 ms for the plain product, and its beta pass reads and writes the float32 C once more)
void add_round_bf16(const float* acc, float alpha, float beta, const uint16_t* c, uint16_t* out, size_t count) {
  for (size_t i = 0; i < count; ++i) out[i] = bf16_bits(alpha * acc[i] + beta * to_float(c[i]));
}

// dense row-major float32 (m, n) <- a 2-D array with strides (s0, s1) in elements
template <typename T>
void widen(const T* from, int64_t s0, int64_t s1, int64_t m, int64_t n, float* to) {
  for (int64_t i = 0; i < m; ++i) {
    const T* row = from + i * s0;
    float* out = to + i * n;
    if (s1 == 1) {
      for (int64_t j = 0; j < n; ++j) out[j] = to_float(row[j]);
    } else {
      for (int64_t j = 0; j < n; ++j) out[j] = to_float(row[j * s1]);
    }
  }
}

// a scratch buffer of `count` elements owned by the encoder (freed when the task has run)
mx::array temporary(mx::cpu::CommandEncoder& encoder, mx::Dtype dtype, size_t count) {
  mx::array t({static_cast<int>(std::max<size_t>(count, 1))}, dtype, nullptr, {});
  t.set_data(mx::allocator::malloc(t.nbytes()));
  encoder.add_temporary(t);
  return t;
}

class Bf16Gemm : public mx::Primitive {
 public:
  Bf16Gemm(mx::Stream stream, float alpha, float beta, bool has_c)
      : mx::Primitive(stream), alpha_(alpha), beta_(beta), has_c_(has_c) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    auto& encoder = mx::cpu::get_command_encoder(stream());
    const mx::array& a = inputs[0];
    const mx::array& b = inputs[1];
    mx::array& out = outputs[0];
    for (const auto& in : inputs) encoder.set_input_array(in);
    out.set_data(mx::allocator::malloc(out.nbytes()));
    encoder.set_output_array(out);
    const int m = a.shape(0), k = a.shape(1), n = b.shape(1);
    const Operand la = layout_of(a), lb = layout_of(b);
    // temporaries: dense copies of a / b when needed, the float32 accumulator unless the output is float32
    const bool f32_out = out.dtype() == mx::float32;
    std::optional<mx::array> ta, tb, acc;
    if (la.copy) ta = temporary(encoder, mx::bfloat16, size_t(m) * k);
    if (lb.copy) tb = temporary(encoder, mx::bfloat16, size_t(k) * n);
    if (!f32_out) acc = temporary(encoder, mx::float32, size_t(m) * n);
    const bool has_c = has_c_;
    std::optional<mx::array> c;
    if (has_c) c = inputs[2];
    const float alpha = alpha_, beta = beta_;
    const auto* pa = reinterpret_cast<const uint16_t*>(a.data<mx::bfloat16_t>());
    const auto* pb = reinterpret_cast<const uint16_t*>(b.data<mx::bfloat16_t>());
    auto* da = ta ? reinterpret_cast<uint16_t*>(ta->data<mx::bfloat16_t>()) : nullptr;
    auto* db = tb ? reinterpret_cast<uint16_t*>(tb->data<mx::bfloat16_t>()) : nullptr;
    float* pc = f32_out ? out.data<float>() : acc->data<float>();
    mx::bfloat16_t* po = f32_out ? nullptr : out.data<mx::bfloat16_t>();
    encoder.dispatch([a, b, c, la, lb, pa, pb, da, db, pc, po, m, n, k, alpha, beta, has_c]() {
      if (da) gather(a, pa, da);
      if (db) gather(b, pb, db);
      const size_t mn = size_t(m) * n;
      if (has_c) {  // C <- c as float32, dense
        const int64_t s0 = c->strides()[0], s1 = c->strides()[1];
        if (c->dtype() == mx::float32) {
          widen(c->data<float>(), s0, s1, m, n, pc);
        } else {
          widen(reinterpret_cast<const uint16_t*>(c->data<mx::bfloat16_t>()), s0, s1, m, n, pc);
        }
      }
      if (k == 0) {  // MKL may skip the beta scaling when there is nothing to multiply
        for (size_t i = 0; i < mn; ++i) pc[i] = has_c ? beta * pc[i] : 0.0f;
      } else {
        gemm_bf16(kRowMajor, la.trans, lb.trans, m, n, k, alpha, da ? da : pa, la.ld, db ? db : pb, lb.ld,
                  has_c ? beta : 0.0f, pc, n);
      }
      if (po) round_bf16(pc, reinterpret_cast<uint16_t*>(po), mn);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("mlx_optim native bf16_gemm: CPU only");
  }

  const char* name() const override { return "MlxOptimBf16Gemm"; }

 private:
  float alpha_;
  float beta_;
  bool has_c_;
};

// The OpenMP runtime MKL runs its products on (libiomp5, or libgomp under MKL_THREADING_LAYER=GNU), found after the
// first product has loaded it: the passes between the products run on the same threads, which are awake then (a
// second runtime's threads would compete with MKL's spinning ones). None (sequential MKL): the passes run serially.
using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);
using OmpInt = int (*)();
GompParallel gomp_parallel = nullptr;
OmpInt omp_thread = nullptr, omp_threads = nullptr;
std::string omp_library;  // which one, for mlx-optim doctor

void find_openmp() {
  static std::once_flag once;
  std::call_once(once, [] {
    const uint16_t one = 0x3F80;  // a 1 x 1 product: MKL loads its threading layer at its first call
    float out = 0.0f;
    gemm_bf16(kRowMajor, kNoTrans, kNoTrans, 1, 1, 1, 1.0f, &one, 1, &one, 1, 0.0f, &out, 1);
    for (const char* lib : {"libiomp5.so", "libgomp.so.1"}) {
      void* h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
      if (h == nullptr) continue;
      auto par = reinterpret_cast<GompParallel>(dlsym(h, "GOMP_parallel"));
      auto num = reinterpret_cast<OmpInt>(dlsym(h, "omp_get_thread_num"));
      auto count = reinterpret_cast<OmpInt>(dlsym(h, "omp_get_num_threads"));
      if (par && num && count) {
        omp_thread = num, omp_threads = count, gomp_parallel = par, omp_library = lib;
        return;
      }
    }
  });
}

// the OpenMP runtime the passes run on ("" when serial); loads MKL's threading layer first
std::string bf16_openmp() {
  if (gemm_bf16 == nullptr) return "";
  find_openmp();
  return omp_library;
}

// f(row) for every row in [0, rows), rows dealt to the threads in chunks of `chunk`, round robin (the symmetric passes'
// rows differ in length); serially when small or without a runtime. f writes disjoint rows, so the result does not
// depend on the number of threads.
template <typename F>
void for_rows(int64_t rows, int64_t cols, int64_t chunk, F&& f) {
  if (gomp_parallel == nullptr || rows * cols < (int64_t(1) << 16)) {
    for (int64_t i = 0; i < rows; ++i) f(i);
    return;
  }
  struct Ctx {
    F* f;
    int64_t rows, chunk;
  } ctx{&f, rows, chunk};
  gomp_parallel(
      [](void* p) {
        auto& c = *static_cast<Ctx*>(p);
        const int64_t t = omp_thread(), n = omp_threads();
        for (int64_t lo = t * c.chunk; lo < c.rows; lo += n * c.chunk)
          for (int64_t i = lo; i < std::min(c.rows, lo + c.chunk); ++i) (*c.f)(i);
      },
      &ctx, 0, 0);
}

// A symmetric (m, m) product S = op(P) op(Q) computed in row blocks, each from its diagonal on (MKL has no bfloat16
// GEMMT): block b holds rows [start(b), end(b)) and columns [start(b), m). With 4 blocks at m = 2048 it took 7.1 ms
// against 10.5 ms for the whole product, with 2 at m = 1024 1.1 against 1.6 ms (one run; smaller blocks run slower
// per flop). Blocks are whole kTile-row tiles (the last one takes the rest), so that no tile straddles two.
constexpr int kTile = 64;
struct SymBlocks {
  int m, count, rows;
  explicit SymBlocks(int m_)
      : m(m_), count(std::clamp(m_ / 512, 1, 4)), rows((m_ / count + kTile - 1) / kTile * kTile) {}
  int start(int b) const { return b * rows; }
  int end(int b) const { return b + 1 == count ? m : (b + 1) * rows; }
  int block_of(int64_t i) const { return std::min<int>(i / rows, count - 1); }
};

// S's computed blocks: a (m, k) row-major; b read as op(b) (k, m) with trans_b (kTrans: b is (m, k) row-major).
void gemm_sym(const SymBlocks& s, int k, const uint16_t* a, int lda, const uint16_t* b, int ldb, int trans_b,
              float* c) {
  for (int i = 0; i < s.count; ++i) {
    const int r0 = s.start(i), rows = s.end(i) - r0;
    const uint16_t* bcols = trans_b == kTrans ? b + size_t(r0) * ldb : b + r0;
    gemm_bf16(kRowMajor, kNoTrans, trans_b, rows, s.m - r0, k, 1.0f, a + size_t(r0) * lda, lda, bcols, ldb, 0.0f,
              c + size_t(r0) * s.m + r0, s.m);
  }
}

// out[j][i] = t[i - i0][j - j0] for i in [i0, i1), j in [j0, j1): a tile held in a local buffer written to its
// transposed place in m-wide rows, each destination row contiguously
template <typename T>
void write_transposed(const T (*t)[kTile], T* out, int m, int i0, int i1, int j0, int j1) {
  for (int j = j0; j < j1; ++j) {
    T* row = out + size_t(j) * m + i0;
    for (int i = 0; i < i1 - i0; ++i) row[i] = t[i][j - j0];
  }
}

// The whole symmetric out = round(alpha * acc + beta * c) (c: null for the plain rounding) from S's computed blocks,
// in one pass of kTile x kTile tiles: each tile is rounded into a local buffer, copied to its place and, when it
// lies right of its own block, to the transposed place too. (A separate mirror pass reading the stored triangle
// with a 4 KB row stride took 1.5 ms a matrix at 2048.) Tile rows are dealt to the threads one at a time.
void round_sym(const SymBlocks& s, const float* acc, float alpha, float beta, const uint16_t* c, uint16_t* out) {
  const int m = s.m, tiles = (m + kTile - 1) / kTile;
  for_rows(tiles, int64_t(m) * kTile, 1, [&](int64_t ti) {
    alignas(64) uint16_t t[kTile][kTile];
    const int i0 = ti * kTile, i1 = std::min(m, i0 + kTile), b = s.block_of(i0);
    for (int j0 = s.start(b); j0 < m; j0 += kTile) {
      const int j1 = std::min(m, j0 + kTile);
      for (int i = i0; i < i1; ++i) {
        const size_t o = size_t(i) * m + j0;
        if (c) {
          add_round_bf16(acc + o, alpha, beta, c + o, t[i - i0], j1 - j0);
        } else {
          round_bf16(acc + o, t[i - i0], j1 - j0);
        }
        std::memcpy(out + o, t[i - i0], sizeof(uint16_t) * (j1 - j0));
      }
      if (j0 < s.end(b)) continue;  // the block's own square: computed on both sides of the diagonal
      write_transposed(t, out, m, i0, i1, j0, j1);
    }
  });
}

// Scratch memory for one task, 64-byte aligned: the calling thread's (MLX's CPU stream worker) kept buffer, grown to
// the largest request up to kKeptScratch bytes, else `own` (freed with the task). The encoder's temporaries are fresh
// pages at every call: their first-touch page faults cost 12-15 ms of the 2048 x 2048 iteration (one run).
constexpr size_t kKeptScratch = size_t(128) << 20;
struct AlignedFree {
  void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t(64)); }
};
using Scratch = std::unique_ptr<uint8_t[], AlignedFree>;

uint8_t* scratch(size_t bytes, Scratch& own) {
  auto allocate = [](size_t n) { return Scratch(static_cast<uint8_t*>(::operator new[](n, std::align_val_t(64)))); };
  if (bytes > kKeptScratch) {
    own = allocate(bytes);
    return own.get();
  }
  thread_local Scratch kept;
  thread_local size_t kept_size = 0;
  if (kept_size < bytes) {
    kept.reset();
    kept_size = 0;
    kept = allocate(bytes);
    kept_size = bytes;
  }
  return kept.get();
}

// sum of the squares of n bfloat16 values in float64, in 8 interleaved partial sums (a fixed order that vectorizes;
// one running sum is a chain of dependent additions: 3 ms of the 2048 x 2048 normalization)
double sum_squares(const uint16_t* row, int n) {
  constexpr int kLanes = 8;
  double part[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double v = to_float(row[j + l]);
      part[l] += v * v;
    }
  for (; j < n; ++j) {
    const double v = to_float(row[j]);
    part[0] += v * v;
  }
  double sum = 0.0;
  for (double v : part) sum += v;
  return sum;
}

#ifdef MLX_OPTIM_AMX
namespace amx = mlx_optim_amx;

// f(unit) for every unit in [0, count), handed to the threads one at a time as they finish (the symmetric products'
// units differ in work, the heaviest first), each thread's tiles configured for the loop. Every unit writes its own
// blocks whole, so the result does not depend on the number of threads.
template <typename F>
void for_units(int count, F&& f) {
  struct Ctx {
    F* f;
    int count;
    std::atomic<int> next;
  } ctx{&f, count, 0};
  auto work = [](void* p) {
    auto& c = *static_cast<Ctx*>(p);
    amx::configure();
    for (int u; (u = c.next.fetch_add(1)) < c.count;) (*c.f)(u);
    amx::release();
  };
  if (gomp_parallel == nullptr || count == 1) {
    work(&ctx);
  } else {
    gomp_parallel(work, &ctx, 0, 0);
  }
}

// C = A B over packed operands of `rows` x `cols` blocks summed over `steps`, epilogue(i0, j0, acc) for each 32 x 32
// float32 block; with `upper`, only the blocks on and above the diagonal. Row panels go in groups whose A panels stay
// in L2 (1 MiB) while the B panels stream past them (from memory, about 15 GB/s a core here: one B panel serves the
// whole group); the columns are split as well when there are few groups, so that both threads get work.
template <typename Epilogue>
void amx_product(const uint16_t* a, const uint16_t* b, int rows, int cols, int steps, bool upper, Epilogue&& epilogue) {
  const size_t panel = size_t(steps) * amx::kStep;
  const int group = std::clamp(int((size_t(1) << 20) / (panel * sizeof(uint16_t))), 1, 8);
  const int groups = (rows + group - 1) / group, splits = std::max(1, 8 / groups);
  for_units(groups * splits, [&](int u) {
    const int g = u / splits, part = u % splits, i_lo = g * group, i_hi = std::min(rows, i_lo + group);
    const int j_lo = std::max(cols * part / splits, upper ? i_lo : 0), j_hi = cols * (part + 1) / splits;
    alignas(64) float acc[amx::kBlock * amx::kBlock];
    for (int j = j_lo; j < j_hi; ++j) {
      for (int i = i_lo; i < (upper ? std::min(i_hi, j + 1) : i_hi); ++i) {
        amx::block(a + i * panel, b + j * panel, steps, acc);
        epilogue(i * amx::kBlock, j * amx::kBlock, acc);
      }
    }
  });
}

// t = round(alpha acc + beta c) for a 32 x 32 block (c: the C term's block, or null), zero outside rows x cols
void round_block(const float* acc, float alpha, float beta, const uint16_t* c, int rows, int cols,
                 uint16_t (*t)[amx::kBlock]) {
  constexpr int kB = amx::kBlock;
  for (int r = 0; r < kB; ++r) {
    if (r >= rows) {
      std::memset(t[r], 0, sizeof(t[r]));
      continue;
    }
    if (c) {
      add_round_bf16(acc + r * kB, alpha, beta, c + r * kB, t[r], kB);
    } else {
      round_bf16(acc + r * kB, t[r], kB);
    }
    std::fill(t[r] + cols, t[r] + kB, uint16_t(0));
  }
}

// The loop of Bf16NewtonSchulz on AMX tiles, X (m, n) bfloat16 row-major, updated in place: the same three products
// and roundings as the MKL loop. Each product's epilogue rounds its 32 x 32 block while it is in cache and writes it
// straight into the tile layout (amx.h) that the next product reads: X blocked (xa, updated in place by B X), A
// blocked and as a B operand, B blocked. Before X X^T and B X, X's B-operand layouts (of X^T, of X) are made from
// its blocks. Four buffers (the layouts share them where their lives do not overlap): 3 M N + M^2 bfloat16 entries
// for a wide X (M, N the sides rounded up to 32), as the MKL loop's float32 accumulator and two matrices. The
// symmetric products compute the blocks on and above the diagonal and write each block's transpose too.
void amx_newton_schulz(uint16_t* x, int m, int n, const std::vector<float>& coeffs) {
  constexpr int kB = amx::kBlock;
  constexpr size_t kS = amx::kStep;
  const int rm = amx::padded(m) / kB, rn = amx::padded(n) / kB;
  const size_t mn = size_t(rm) * rn * kS, mm = size_t(rm) * rm * kS, big = std::max(mn, mm);
  Scratch own;
  auto* xa = reinterpret_cast<uint16_t*>(scratch(sizeof(uint16_t) * (mn + 2 * big + mm), own));
  uint16_t* one = xa + mn;    // X^T as a B operand (for X X^T), then B blocked (B X's A operand)
  uint16_t* two = one + big;  // A blocked (A A's A operand and C term), then X as a B operand (for B X)
  uint16_t *xt = one, *ba = one, *aa = two, *xv = two, *av = two + big;
  const int64_t work = int64_t(std::max(m, n)) * kB;  // entries a panel holds (for_rows' serial threshold)
  for_rows(rm, work, 1, [&](int64_t p) { amx::pack_a(x, n, m, n, int(p), xa); });
  // block (i, j) of a (rows x cols blocks) matrix: blocked at (i cols + j), as a B operand at (j rows + i)
  auto at = [](uint16_t* base, int i, int j, int cols) { return base + (size_t(i) * cols + j) * kS; };
  // X's blocks in a B-operand layout: of X^T (block (i, j) at xt's (i, j)) or of X (at xv's (j, i))
  auto relayout = [&](bool transposed, uint16_t* out) {  // blocks dealt to the threads 16 at a time
    for_rows(int64_t(rm) * rn, kB * kB, 16, [&](int64_t b) {
      const int i = int(b / rn), j = int(b % rn);
      const auto* t = reinterpret_cast<const uint16_t(*)[kB]>(at(xa, i, j, rn));
      if (transposed) {
        alignas(64) uint16_t u[kB][kB];
        amx::transpose(t, u);
        amx::vnni(u, at(out, i, j, rn));
      } else {
        amx::vnni(t, at(out, j, i, rm));
      }
    });
  };
  for (size_t it = 0; it + 2 < coeffs.size(); it += 3) {
    const float w0 = coeffs[it], w1 = coeffs[it + 1], w2 = coeffs[it + 2];
    const bool last = it + 5 >= coeffs.size();
    // A = X X^T and B = w1 A + w2 A A: symmetric, block (i, j) and its transpose (j, i)
    auto symmetric = [&](int i0, int j0, const float* acc, float alpha, float beta, const uint16_t* c, uint16_t* out,
                         uint16_t* operand) {
      const int i = i0 / kB, j = j0 / kB;
      alignas(64) uint16_t t[kB][kB], u[kB][kB];
      round_block(acc, alpha, beta, c, std::min(kB, m - i0), std::min(kB, m - j0), t);
      if (i == j)
        for (int r = 1; r < kB; ++r)
          for (int q = 0; q < r; ++q) t[r][q] = t[q][r];  // exactly symmetric by construction
      std::memcpy(at(out, i, j, rm), t, sizeof(t));
      if (operand) amx::vnni(t, at(operand, j, i, rm));
      if (i == j) return;
      amx::transpose(t, u);
      std::memcpy(at(out, j, i, rm), u, sizeof(u));
      if (operand) amx::vnni(u, at(operand, i, j, rm));
    };
    relayout(true, xt);
    amx_product(xa, xt, rm, rm, rn, true, [&](int i0, int j0, const float* acc) {
      symmetric(i0, j0, acc, 1.0f, 0.0f, nullptr, aa, av);
    });
    amx_product(aa, av, rm, rm, rm, true, [&](int i0, int j0, const float* acc) {
      symmetric(i0, j0, acc, w2, w1, at(aa, i0 / kB, j0 / kB, rm), ba, nullptr);
    });
    // X = w0 X + B X, in place in xa (a block's C term is read where its result goes; the product reads xv)
    relayout(false, xv);
    amx_product(ba, xv, rm, rn, rm, false, [&](int i0, int j0, const float* acc) {
      const int i = i0 / kB, j = j0 / kB, rows = std::min(kB, m - i0), cols = std::min(kB, n - j0);
      alignas(64) uint16_t t[kB][kB];
      round_block(acc, 1.0f, w0, at(xa, i, j, rn), rows, cols, t);
      if (last) {
        for (int r = 0; r < rows; ++r) std::memcpy(x + size_t(i0 + r) * n + j0, t[r], sizeof(uint16_t) * cols);
      } else {
        std::memcpy(at(xa, i, j, rn), t, sizeof(t));
      }
    });
  }
}
#endif

// AMX tiles for the loop: compiled for this processor (amx.h) and granted by the kernel
bool amx_available() {
#ifdef MLX_OPTIM_AMX
  return amx::available();
#else
  return false;
#endif
}

// Newton-Schulz in bfloat16 as one task: for each (w0, w1, w2) of `coeffs`,
//   A = round(X X^T);  B = round(w1 A + w2 A A);  X = round(w0 X + B X)
// each product accumulated in float32 and rounded once, as bf16_gemm and torch's addmm; the scaling and the C term
// are applied after the plain product, so an entry may differ from three bf16_gemm calls by one bfloat16 ulp where
// the float32 sum rounds the other way. The symmetric A and A A are computed in blocks on and above the diagonal and
// mirrored (exactly symmetric; the other triangle's products may round differently in a full GEMM). With `amx`, the
// products run on AMX tiles (amx_newton_schulz); else on MKL's GEMM, one float32 accumulator serving the three
// products and the passes between them running on MKL's threads.
// With `normalize`, the input (float32, bfloat16 or float16, any strides) is first rounded to bfloat16 and divided by
// its Frobenius norm as matrix.newton_schulz does: X = round(x / max(round(||x||), round(eps))).
class Bf16NewtonSchulz : public mx::Primitive {
 public:
  Bf16NewtonSchulz(mx::Stream stream, std::vector<float> coeffs, bool normalize, float eps, bool amx)
      : mx::Primitive(stream), coeffs_(std::move(coeffs)), normalize_(normalize), eps_(eps), amx_(amx) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    auto& encoder = mx::cpu::get_command_encoder(stream());
    const mx::array& x0 = inputs[0];
    mx::array& out = outputs[0];
    encoder.set_input_array(x0);
    out.set_data(mx::allocator::malloc(out.nbytes()));
    encoder.set_output_array(out);
    const int m = x0.shape(0), n = x0.shape(1);
    const size_t mm = size_t(m) * m, mn = size_t(m) * n;
    auto* x = reinterpret_cast<uint16_t*>(out.data<mx::bfloat16_t>());
    std::vector<float> coeffs = coeffs_;
    const bool normalize = normalize_;
    const float eps = eps_;
    const bool amx = amx_;
    encoder.dispatch([x0, x, m, n, mm, mn, coeffs, normalize, eps, amx]() {
      if (m == 0 || n == 0) return;
#ifdef MLX_OPTIM_AMX
      if (amx) {
        find_openmp();
        start(x0, x, m, n, normalize, eps);
        amx_newton_schulz(x, m, n, coeffs);
        return;
      }
#endif
      Scratch own;  // float32 accumulator, then A and B in bfloat16
      const size_t bytes = std::max(mm, mn) * sizeof(float) + 2 * mm * sizeof(uint16_t);
      float* pf = reinterpret_cast<float*>(scratch(bytes, own));
      uint16_t* pa = reinterpret_cast<uint16_t*>(pf + std::max(mm, mn));
      uint16_t* pb = pa + mm;
      find_openmp();
      start(x0, x, m, n, normalize, eps);
      const SymBlocks sym(m);
      for (size_t i = 0; i + 2 < coeffs.size(); i += 3) {
        const float w0 = coeffs[i], w1 = coeffs[i + 1], w2 = coeffs[i + 2];
        gemm_sym(sym, n, x, n, x, n, kTrans, pf);  // A = X X^T
        round_sym(sym, pf, 1.0f, 0.0f, nullptr, pa);
        gemm_sym(sym, m, pa, m, pa, m, kNoTrans, pf);  // B = w1 A + w2 A A
        round_sym(sym, pf, w2, w1, pa, pb);
        gemm_bf16(kRowMajor, kNoTrans, kNoTrans, m, n, m, 1.0f, pb, m, x, n, 0.0f, pf, n);  // X = w0 X + B X
        for_rows(m, n, 16, [&](int64_t r) {
          const size_t o = size_t(r) * n;
          add_round_bf16(pf + o, 1.0f, w0, x + o, x + o, n);
        });
      }
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("mlx_optim native bf16_newton_schulz: CPU only");
  }

  const char* name() const override { return "MlxOptimBf16NewtonSchulz"; }

 private:
  // x <- x0 rounded to bfloat16 (dense), then divided by its norm when asked
  static void start(const mx::array& x0, uint16_t* x, int m, int n, bool normalize, float eps) {
    const int64_t s0 = x0.strides()[0], s1 = x0.strides()[1];
    std::vector<double> sums(normalize ? m : 0);
    auto copy_rows = [&](const auto* src) {
      for_rows(m, n, 16, [&](int64_t i) {
        uint16_t* row = x + size_t(i) * n;
        for (int j = 0; j < n; ++j) row[j] = bf16_bits(to_float(src[i * s0 + j * s1]));
        if (normalize) sums[i] = sum_squares(row, n);
      });
    };
    if (x0.dtype() == mx::float32) {
      copy_rows(x0.data<float>());
    } else if (x0.dtype() == mx::float16) {
      copy_rows(x0.data<mx::float16_t>());
    } else {
      copy_rows(reinterpret_cast<const uint16_t*>(x0.data<mx::bfloat16_t>()));
    }
    if (!normalize) return;
    double total = 0.0;  // rows summed in order: the same total on any number of threads
    for (double s : sums) total += s;
    const float norm = to_float(bf16_bits(static_cast<float>(std::sqrt(total))));
    const float denom = std::max(norm, to_float(bf16_bits(eps)));
    for_rows(m, n, 16, [&](int64_t i) {
      uint16_t* row = x + size_t(i) * n;
      for (int j = 0; j < n; ++j) row[j] = bf16_bits(to_float(row[j]) / denom);
    });
  }

  std::vector<float> coeffs_;
  bool normalize_;
  float eps_;
  bool amx_;
};

void check(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("mlx_optim native: " + what);
}

mx::array bf16_gemm(const mx::array& a, const mx::array& b, const std::optional<mx::array>& c, float alpha,
                    float beta, bool f32_out) {
  check(gemm_bf16 != nullptr, "MKL is not loaded (bf16gemm_init)");
  check(a.ndim() == 2 && b.ndim() == 2, "a and b must be 2-D");
  check(a.dtype() == mx::bfloat16 && b.dtype() == mx::bfloat16, "a and b must be bfloat16");
  check(a.shape(1) == b.shape(0), "a's columns must match b's rows");
  const int m = a.shape(0), n = b.shape(1);
  std::vector<mx::array> inputs = {a, b};
  if (c) {
    check(c->ndim() == 2 && c->shape(0) == m && c->shape(1) == n, "c must be (a.rows, b.cols)");
    check(c->dtype() == mx::bfloat16 || c->dtype() == mx::float32, "c must be bfloat16 or float32");
    inputs.push_back(*c);
  }
  auto s = mx::default_stream(mx::Device::cpu);
  const mx::Dtype out = f32_out ? mx::float32 : mx::bfloat16;
  return mx::array({m, n}, out, std::make_shared<Bf16Gemm>(s, alpha, beta, c.has_value()), inputs);
}

mx::array bf16_newton_schulz(const mx::array& x, const std::vector<float>& coeffs, std::optional<float> eps,
                             bool amx) {
  check(gemm_bf16 != nullptr, "MKL is not loaded (bf16gemm_init)");
  if (eps) {
    check(x.ndim() == 2 && (x.dtype() == mx::bfloat16 || x.dtype() == mx::float32 || x.dtype() == mx::float16),
          "x must be a 2-D float32, bfloat16 or float16 matrix");
  } else {
    check(x.ndim() == 2 && x.dtype() == mx::bfloat16, "x must be a 2-D bfloat16 matrix (or pass eps)");
  }
  check(coeffs.size() % 3 == 0, "coeffs must hold (a, b, c) per step");
  check(!amx || amx_available(), "AMX is not available (amx_available())");
  auto s = mx::default_stream(mx::Device::cpu);
  return mx::array(x.shape(), mx::bfloat16,
                   std::make_shared<Bf16NewtonSchulz>(s, coeffs, eps.has_value(), eps.value_or(0.0f), amx), {x});
}

// ---- float32 Gram matrices through the loaded BLAS's cblas_ssyrk --------------------------------------------------

using Ssyrk = void (*)(int layout, int uplo, int trans, int n, int k, float alpha, const float* a, int lda, float beta,
                       float* c, int ldc);
constexpr int kUpper = 121;
Ssyrk ssyrk = nullptr;

// cblas_ssyrk of the library at `path`, which must be loaded already (mlx_optim.blas loaded it for MLX); "" on success.
std::string gram_init(const std::string& path) {
  if (ssyrk != nullptr) return "";
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (handle == nullptr) return path + " is not loaded";
  void* sym = dlsym(handle, "cblas_ssyrk");
  if (sym == nullptr) return "no cblas_ssyrk in " + path;
  ssyrk = reinterpret_cast<Ssyrk>(sym);
  return "";
}

// c (m, m) row-major: the lower triangle <- the upper one, a kTile x kTile tile of the upper side at a time through
// a local buffer (the rows of c are read and written contiguously)
void mirror_upper(float* c, int m) {
  for (int i0 = 0; i0 < m; i0 += kTile) {
    const int i1 = std::min(m, i0 + kTile);
    for (int i = i0; i < i1; ++i)  // the diagonal tile
      for (int j = i0; j < i; ++j) c[size_t(i) * m + j] = c[size_t(j) * m + i];
    alignas(64) float t[kTile][kTile];
    for (int j0 = i1; j0 < m; j0 += kTile) {
      const int j1 = std::min(m, j0 + kTile);
      for (int i = i0; i < i1; ++i) std::memcpy(t[i - i0], c + size_t(i) * m + j0, sizeof(float) * (j1 - j0));
      write_transposed(t, c, m, i0, i1, j0, j1);
    }
  }
}

// u u^T of a float32 (m, k) matrix: SYRK's upper triangle (half the products of a GEMM), mirrored
class Gram : public mx::Primitive {
 public:
  explicit Gram(mx::Stream stream) : mx::Primitive(stream) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    auto& encoder = mx::cpu::get_command_encoder(stream());
    const mx::array& u = inputs[0];
    mx::array& out = outputs[0];
    encoder.set_input_array(u);
    out.set_data(mx::allocator::malloc(out.nbytes()));
    encoder.set_output_array(out);
    const int m = u.shape(0), k = u.shape(1);
    const Operand lu = layout_of(u);
    std::optional<mx::array> tu;
    if (lu.copy) tu = temporary(encoder, mx::float32, size_t(m) * k);
    const float* pu = u.data<float>();
    float* du = tu ? tu->data<float>() : nullptr;
    float* c = out.data<float>();
    encoder.dispatch([u, lu, pu, du, c, m, k]() {
      if (m == 0) return;
      if (k == 0) {
        std::fill(c, c + size_t(m) * m, 0.0f);
        return;
      }
      if (du) gather(u, pu, du);
      ssyrk(kRowMajor, kUpper, lu.trans, m, k, 1.0f, du ? du : pu, lu.ld, 0.0f, c, m);
      mirror_upper(c, m);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("mlx_optim native gram: CPU only");
  }

  const char* name() const override { return "MlxOptimGram"; }
};

mx::array gram(const mx::array& u) {
  if (ssyrk == nullptr) throw std::invalid_argument("mlx_optim native gram: no SYRK loaded (gram_init)");
  if (u.ndim() != 2 || u.dtype() != mx::float32)
    throw std::invalid_argument("mlx_optim native gram: u must be a 2-D float32 matrix");
  auto s = mx::default_stream(mx::Device::cpu);
  return mx::array({u.shape(0), u.shape(0)}, mx::float32, std::make_shared<Gram>(s), {u});
}

}  // namespace

void register_bf16gemm(nb::module_& m) {
  m.def("bf16gemm_init", &bf16gemm_init);
  m.def("bf16_gemm", &bf16_gemm, nb::arg("a"), nb::arg("b"), nb::arg("c").none() = nb::none(),
        nb::arg("alpha") = 1.0f, nb::arg("beta") = 0.0f, nb::arg("f32_out") = false);
  m.def("bf16_openmp", &bf16_openmp);
  m.def("gram_init", &gram_init);
  m.def("gram", &gram, nb::arg("u"));
  m.def("bf16_newton_schulz", &bf16_newton_schulz, nb::arg("x"), nb::arg("coeffs"), nb::arg("eps").none() = nb::none(),
        nb::arg("amx") = false);
  m.def("amx_available", &amx_available);
}
