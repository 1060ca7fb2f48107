// One leaf of Adam / AdamW with blockwise 8-bit state (mlx_optim.quantized's format) as one MLX primitive.
//
// Built and loaded by mlx_optim/native/__init__.py (g++, nanobind, the installed mlx's headers and libmlx).
// Per block of `block` entries: dequantize both moments (map[code] * scale), run the Adam step in float32 (the
// arithmetic of mlx_optim.optimizers.adam.adam_update, in the same order), then quantize the new moments again
// (block absmax, floored; torchao's nearest rule through the pure path's threshold table, see nearest_code).
// The parameter update uses the unrounded moments.
// Entries past the parameter's size (the last block's zero padding) are quantized as zeros.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/vector.h>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace mx = mlx::core;

namespace {

constexpr int kScalars = 8;                     // k1, c1, k2, c2, eps, wd, step_size, inv_bc2_sqrt
constexpr size_t kSyncBytes = size_t(1) << 20;  // outputs allocated ahead of the stream at most (eval_cpu)

struct Table {
  const int32_t* entries;
  int32_t key_low;
  int32_t last;
};

struct Args {
  float k1, c1, k2, c2, eps, wd, step_size, inv_bc2_sqrt;
};

inline float abs_max(const float* x, size_t n) {
  // on the bit patterns: for |x| (sign bit cleared) the integer order is the float order, and this loop
  // vectorizes (a float max reduction does not without -ffast-math)
  int32_t best = 0;
  for (size_t j = 0; j < n; ++j) {
    int32_t bits;
    std::memcpy(&bits, x + j, sizeof(bits));
    bits &= 0x7FFFFFFF;
    best = bits > best ? bits : best;
  }
  float out;
  std::memcpy(&out, &best, sizeof(out));
  return out;
}

// torchao's nearest codes of x[j] / scale, j < n, as mlx_optim.quantized._codes8 computes them: the thresholds
// between codes as monotone integer keys of the float32 value, one table entry per bucket of 2^16 consecutive keys
// (quantized._bucket_table): the code of the bucket's first key << 17 | the low 16 bits of the one threshold inside
// the bucket (65536: none). Two passes: the keys (vectorized), then the table lookups.
inline void nearest_codes(const float* x, size_t n, float scale, Table t, int32_t* bucket, int32_t* low,
                          uint8_t* out) {
  for (size_t j = 0; j < n; ++j) {
    const float y = x[j] / scale;
    int32_t bits;
    std::memcpy(&bits, &y, sizeof(bits));
    const int32_t key = bits < 0 ? -(bits & 0x7FFFFFFF) : bits;
    const int32_t k = (key >> 16) - t.key_low;
    bucket[j] = k < 0 ? 0 : (k > t.last ? t.last : k);
    low[j] = key & 0xFFFF;
  }
  for (size_t j = 0; j < n; ++j) {
    const int32_t entry = t.entries[bucket[j]];
    out[j] = static_cast<uint8_t>((entry >> 17) + static_cast<int32_t>(low[j] >= (entry & 0x1FFFF)));
  }
}

template <typename P, typename G, int WD>  // WD: weight decay mode (compile-time, so the update loop vectorizes)
void adam8_loop(
    const P* p, const G* g, const uint8_t* cm, const float* sm, const uint8_t* cv, const float* sv,
    const float* qm, const float* qv, Table tm, Table tv, Args a, size_t n, int block, float floor, P* p_out,
    uint8_t* cm_out, float* sm_out, uint8_t* cv_out, float* sv_out) {
  const size_t width = static_cast<size_t>(block);
  std::vector<float> buffer(2 * width);
  std::vector<int32_t> keys(2 * width);
  float* bm = buffer.data();
  float* bv = bm + width;
  const size_t blocks = (n + width - 1) / width;
  for (size_t b = 0; b < blocks; ++b) {
    const size_t lo = b * width;
    const size_t len = std::min(width, n - lo);
    const float scale_m = sm[b];
    const float scale_v = sv[b];
    for (size_t j = 0; j < len; ++j) {  // the map lookups, apart: the update below then vectorizes
      bm[j] = qm[cm[lo + j]];
      bv[j] = qv[cv[lo + j]];
    }
    for (size_t j = 0; j < len; ++j) {
      const size_t i = lo + j;
      float pp = static_cast<float>(p[i]);
      float gg = static_cast<float>(g[i]);
      if constexpr (WD == 1) gg = gg + a.wd * pp;  // L2 penalty: g + wd p
      if constexpr (WD == 2) pp = pp * a.wd;       // decoupled: p * (1 - lr wd), the factor passed as wd
      float m = bm[j] * scale_m;
      float v = bv[j] * scale_v;
      m = (m * a.k1 + gg) * a.c1;
      v = (v * a.k2 + gg * gg) * a.c2;
      pp = pp - (m / (std::sqrt(v) * a.inv_bc2_sqrt + a.eps)) * a.step_size;
      p_out[i] = static_cast<P>(pp);
      bm[j] = m;
      bv[j] = v;
    }
    for (size_t j = len; j < width; ++j) {
      bm[j] = 0.0f;
      bv[j] = 0.0f;
    }
    const float fm = std::max(abs_max(bm, len), floor);
    const float fv = std::max(abs_max(bv, len), floor);
    sm_out[b] = fm;
    sv_out[b] = fv;
    nearest_codes(bm, width, fm, tm, keys.data(), keys.data() + width, cm_out + lo);
    nearest_codes(bv, width, fv, tv, keys.data(), keys.data() + width, cv_out + lo);
  }
}

// dst (dense, row-major) <- src (any strides)
void strided_copy(const mx::array& src, mx::array& dst) {
  const size_t size = src.itemsize();
  const char* from = src.data<char>();
  char* to = dst.data<char>();
  const auto& shape = src.shape();
  const auto& strides = src.strides();
  for (size_t i = 0; i < src.size(); ++i) {
    int64_t loc = 0;
    size_t rest = i;
    for (int axis = static_cast<int>(shape.size()) - 1; axis >= 0; --axis) {
      loc += static_cast<int64_t>(rest % shape[axis]) * strides[axis];
      rest /= shape[axis];
    }
    std::memcpy(to + i * size, from + loc * size, size);
  }
}

class Adam8 : public mx::Primitive {
 public:
  Adam8(mx::Stream stream, int wd_mode, int block, float floor, int32_t key_low)
      : mx::Primitive(stream), wd_mode_(wd_mode), block_(block), floor_(floor), key_low_(key_low) {}

  void eval_cpu(const std::vector<mx::array>& raw, std::vector<mx::array>& outputs) override {
    // MLX runs ahead of the CPU stream by up to ~10 tasks, and this is one task per leaf: without a wait every
    // leaf's outputs would be allocated before the first leaf's inputs (old parameter and codes) are freed. Once
    // the outputs allocated since the last wait reach kSyncBytes, drain the stream first, so this leaf's outputs
    // can take the buffers the previous leaves released.
    size_t bytes = 0;
    for (const auto& out : outputs) bytes += out.nbytes();
    static std::atomic<size_t> pending{0};
    if (pending.fetch_add(bytes) + bytes > kSyncBytes) {
      mx::synchronize(stream());
      pending = bytes;
    }
    auto& encoder = mx::cpu::get_command_encoder(stream());
    // inputs that are views (not dense row-major) are copied by the task into temporaries: no graph nodes
    std::vector<mx::array> inputs;
    std::vector<std::pair<mx::array, mx::array>> copies;
    for (const auto& in : raw) {
      encoder.set_input_array(in);
      if (in.flags().row_contiguous && in.data_size() == in.size()) {
        inputs.push_back(in);
      } else {
        mx::array dense(in.shape(), in.dtype(), nullptr, {});
        dense.set_data(mx::allocator::malloc(dense.nbytes()));
        encoder.add_temporary(dense);
        copies.emplace_back(in, dense);
        inputs.push_back(dense);
      }
    }
    for (auto& out : outputs) {
      // no buffer donation: each of the five outputs holds the inputs, so none is ever donatable
      out.set_data(mx::allocator::malloc(out.nbytes()));
      encoder.set_output_array(out);
    }
    const auto& p = inputs[0];
    const auto& g = inputs[1];
    const size_t n = p.size();
    const int block = block_;
    const int wd_mode = wd_mode_;
    const float floor = floor_;
    const int32_t key_low = key_low_;
    auto launch = [&](auto p_tag, auto g_tag) {
      using P = decltype(p_tag);
      using G = decltype(g_tag);
      encoder.dispatch([copies, pp = p.data<P>(), gp = g.data<G>(), cm = inputs[2].data<uint8_t>(),
                        sm = inputs[3].data<float>(), cv = inputs[4].data<uint8_t>(),
                        sv = inputs[5].data<float>(), qm = inputs[6].data<float>(), qv = inputs[7].data<float>(),
                        tm = Table{inputs[8].data<int32_t>(), key_low, static_cast<int32_t>(inputs[8].size()) - 1},
                        tv = Table{inputs[9].data<int32_t>(), key_low, static_cast<int32_t>(inputs[9].size()) - 1},
                        sc = inputs[10].data<float>(), po = outputs[0].data<P>(), cmo = outputs[1].data<uint8_t>(),
                        smo = outputs[2].data<float>(), cvo = outputs[3].data<uint8_t>(),
                        svo = outputs[4].data<float>(), n, block, wd_mode, floor]() mutable {
        for (auto& [src, dst] : copies) strided_copy(src, dst);
        const Args args{sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7]};
        auto run = [&](auto mode) {
          adam8_loop<P, G, decltype(mode)::value>(pp, gp, cm, sm, cv, sv, qm, qv, tm, tv, args, n, block, floor, po,
                                                  cmo, smo, cvo, svo);
        };
        if (wd_mode == 1) {
          run(std::integral_constant<int, 1>{});
        } else if (wd_mode == 2) {
          run(std::integral_constant<int, 2>{});
        } else {
          run(std::integral_constant<int, 0>{});
        }
      });
    };
    const bool p16 = p.dtype() == mx::bfloat16;
    const bool g16 = g.dtype() == mx::bfloat16;
    if (p16 && g16) {
      launch(mx::bfloat16_t{}, mx::bfloat16_t{});
    } else if (p16) {
      launch(mx::bfloat16_t{}, float{});
    } else if (g16) {
      launch(float{}, mx::bfloat16_t{});
    } else {
      launch(float{}, float{});
    }
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("mlx_optim native adam8: CPU only");
  }

  const char* name() const override { return "MlxOptimAdam8"; }

 private:
  int wd_mode_;
  int block_;
  float floor_;
  int32_t key_low_;
};

void check(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("mlx_optim native adam8: " + what);
}

// p, g: parameter and gradient (float32 or bfloat16, same shape); codes_m / codes_v: uint8 (padded size);
// scale_m / scale_v: float32 (blocks); map_m / map_v: float32 (256, sorted); table_m / table_v: int32 threshold
// tables (mlx_optim.quantized._bucket_table), key_low their first bucket; scalars: 8 float32 values
// (k1, c1, k2, c2, eps, wd, step_size, inv_bc2_sqrt; with wd_mode 2, wd is the factor 1 - lr wd).
// Returns [p', codes_m', scale_m', codes_v', scale_v'].
std::vector<mx::array> adam8(
    const mx::array& p, const mx::array& g, const mx::array& codes_m, const mx::array& scale_m,
    const mx::array& codes_v, const mx::array& scale_v, const mx::array& map_m, const mx::array& map_v,
    const mx::array& table_m, const mx::array& table_v, int key_low, const mx::array& scalars, int wd_mode,
    int block, float floor) {
  const auto f32 = mx::float32;
  check(p.dtype() == f32 || p.dtype() == mx::bfloat16, "p must be float32 or bfloat16");
  check(g.dtype() == f32 || g.dtype() == mx::bfloat16, "g must be float32 or bfloat16");
  check(p.shape() == g.shape(), "p and g must have one shape");
  check(block >= 2 && wd_mode >= 0 && wd_mode <= 2, "bad block or wd_mode");
  check(scalars.dtype() == f32 && scalars.size() == kScalars, "scalars must be 8 float32 values");
  const size_t blocks = (p.size() + block - 1) / block;
  const size_t padded = blocks * block;
  check(codes_m.dtype() == mx::uint8 && codes_v.dtype() == mx::uint8, "codes must be uint8");
  check(codes_m.size() == padded && codes_v.size() == padded, "codes do not match the parameter's size");
  check(scale_m.dtype() == f32 && scale_v.dtype() == f32, "scales must be float32");
  check(scale_m.size() == blocks && scale_v.size() == blocks, "scales do not match the parameter's size");
  check(map_m.dtype() == f32 && map_v.dtype() == f32 && map_m.size() == 256 && map_v.size() == 256,
        "maps must be 256 float32 values");
  check(table_m.dtype() == mx::int32 && table_v.dtype() == mx::int32 && table_m.size() > 0 && table_v.size() > 0,
        "tables must be int32");
  auto s = mx::default_stream(mx::Device::cpu);
  std::vector<mx::array> inputs = {p, g, codes_m, scale_m, codes_v, scale_v, map_m, map_v, table_m, table_v, scalars};
  return mx::array::make_arrays(
      {p.shape(), codes_m.shape(), scale_m.shape(), codes_v.shape(), scale_v.shape()},
      {p.dtype(), mx::uint8, f32, mx::uint8, f32}, std::make_shared<Adam8>(s, wd_mode, block, floor, key_low), inputs);
}

}  // namespace

void register_bf16gemm(nanobind::module_& m);  // bf16gemm.cpp

NB_MODULE(_adam8, m) {
  m.doc() = "mlx_optim's fused Adam step with blockwise 8-bit state and bfloat16 GEMM (CPU)";
  m.def("adam8", &adam8);
  register_bf16gemm(m);
}
