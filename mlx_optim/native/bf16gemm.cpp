// A bfloat16 GEMM for MLX's CPU backend through MKL's cblas_gemm_bf16bf16f32 (AMX / AVX512-BF16 where present).
//
// Built into the same extension as adam8.cpp (mlx_optim/native/__init__.py). MKL is not linked: its runtime
// library (libmkl_rt, pip package `mkl`) is opened with dlopen by bf16gemm_init(path), called once from Python.
//
// bf16_gemm(a, b, c, alpha, beta, out_dtype) = round(alpha * (a @ b) + beta * c): a (m, k) and b (k, n) bfloat16,
// c (m, n) bfloat16 or float32 or absent, the products accumulated in float32 and the result rounded once to
// out_dtype (bfloat16 or float32), as torch's CPU mm / addmm on bfloat16 tensors.

#include <dlfcn.h>

#include <algorithm>
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

// Newton-Schulz in bfloat16 as one task: for each (w0, w1, w2) of `coeffs`,
//   A = round(X X^T);  B = round(w1 A + w2 A A);  X = round(w0 X + B X)
// each product accumulated in float32 by MKL and rounded once, as bf16_gemm and torch's addmm; the scaling and the C
// term are applied after MKL's plain product (add_round_bf16), so an entry may differ from three bf16_gemm calls by
// one bfloat16 ulp where the float32 sum rounds the other way. One float32 accumulator serves the three products.
class Bf16NewtonSchulz : public mx::Primitive {
 public:
  Bf16NewtonSchulz(mx::Stream stream, std::vector<float> coeffs) : mx::Primitive(stream), coeffs_(std::move(coeffs)) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    auto& encoder = mx::cpu::get_command_encoder(stream());
    const mx::array& x0 = inputs[0];
    mx::array& out = outputs[0];
    encoder.set_input_array(x0);
    out.set_data(mx::allocator::malloc(out.nbytes()));
    encoder.set_output_array(out);
    const int m = x0.shape(0), n = x0.shape(1);
    const size_t mm = size_t(m) * m, mn = size_t(m) * n;
    mx::array a16 = temporary(encoder, mx::bfloat16, mm), b16 = temporary(encoder, mx::bfloat16, mm);
    mx::array acc = temporary(encoder, mx::float32, std::max(mm, mn));
    auto* x = reinterpret_cast<uint16_t*>(out.data<mx::bfloat16_t>());
    auto* pa = reinterpret_cast<uint16_t*>(a16.data<mx::bfloat16_t>());
    auto* pb = reinterpret_cast<uint16_t*>(b16.data<mx::bfloat16_t>());
    float* pf = acc.data<float>();
    const auto* src = reinterpret_cast<const uint16_t*>(x0.data<mx::bfloat16_t>());
    std::vector<float> coeffs = coeffs_;
    encoder.dispatch([x0, src, x, pa, pb, pf, m, n, mm, mn, coeffs]() {
      gather(x0, src, x);
      if (m == 0 || n == 0) return;
      for (size_t i = 0; i + 2 < coeffs.size(); i += 3) {
        const float w0 = coeffs[i], w1 = coeffs[i + 1], w2 = coeffs[i + 2];
        gemm_bf16(kRowMajor, kNoTrans, kTrans, m, m, n, 1.0f, x, n, x, n, 0.0f, pf, m);  // A = X X^T
        round_bf16(pf, pa, mm);
        gemm_bf16(kRowMajor, kNoTrans, kNoTrans, m, m, m, 1.0f, pa, m, pa, m, 0.0f, pf, m);  // B = w1 A + w2 A A
        add_round_bf16(pf, w2, w1, pa, pb, mm);
        gemm_bf16(kRowMajor, kNoTrans, kNoTrans, m, n, m, 1.0f, pb, m, x, n, 0.0f, pf, n);  // X = w0 X + B X
        add_round_bf16(pf, 1.0f, w0, x, x, mn);
      }
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("mlx_optim native bf16_newton_schulz: CPU only");
  }

  const char* name() const override { return "MlxOptimBf16NewtonSchulz"; }

 private:
  std::vector<float> coeffs_;
};

void check(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("mlx_optim native bf16_gemm: " + what);
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

mx::array bf16_newton_schulz(const mx::array& x, const std::vector<float>& coeffs) {
  check(gemm_bf16 != nullptr, "MKL is not loaded (bf16gemm_init)");
  check(x.ndim() == 2 && x.dtype() == mx::bfloat16, "x must be a 2-D bfloat16 matrix");
  check(coeffs.size() % 3 == 0, "coeffs must hold (a, b, c) per step");
  auto s = mx::default_stream(mx::Device::cpu);
  return mx::array(x.shape(), mx::bfloat16, std::make_shared<Bf16NewtonSchulz>(s, coeffs), {x});
}

}  // namespace

void register_bf16gemm(nb::module_& m) {
  m.def("bf16gemm_init", &bf16gemm_init);
  m.def("bf16_gemm", &bf16_gemm, nb::arg("a"), nb::arg("b"), nb::arg("c").none() = nb::none(),
        nb::arg("alpha") = 1.0f, nb::arg("beta") = 0.0f, nb::arg("f32_out") = false);
  m.def("bf16_newton_schulz", &bf16_newton_schulz, nb::arg("x"), nb::arg("coeffs"));
}
