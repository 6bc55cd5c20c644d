// Fused CPU kernels of the Mamba mixer (dnadiff.models.kernels.cpu_fused): the selective scan
// (forward and backward) and the depthwise causal conv + SiLU, on channels-last fp32 tensors.
//
// Layout: every per-channel tensor is indexed (group, batch, position, channel) with unit stride
// along the channel axis and any strides along the other three (a group stride of 0 means "one
// tensor shared by all groups"); B and C are (group, batch, position, state) with unit stride
// along the state axis. A group is one scan direction (its own A, D, delta bias, conv weights);
// a group flagged in `reverse` runs from the last position to the first, so both directions of
// a bidirectional layer read the same tensors without flipping them.
//
// SIMD: W consecutive channels are one GCC/Clang vector; the state of a block of W channels is
// n vectors. Threads (at::parallel_for, so torch's thread settings apply) take (batch, block)
// tasks and loop over the groups inside a task, so that outputs shared by the groups (a summed
// output, the gradient of a shared input) are accumulated without races.
//
// Forward: one pass over the sequence per block; with `save`, the state at the start of every
// segment of S positions is stored (n * d floats per segment). Backward, per block and segment
// in reverse order: recompute the segment's states from the stored one (kept in a small
// buffer), then walk it backwards accumulating dL/dh. Gradients that sum over channels (B, C)
// are accumulated per lane in a segment buffer shared by the task's blocks and reduced once per
// segment; those that sum over batch (A, D, delta bias, conv weights) are returned per batch
// row and summed by the caller.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

#if !defined(DNADIFF_VW)
#if defined(__AVX512F__)
#define DNADIFF_VW 16
#else
#define DNADIFF_VW 8
#endif
#endif
constexpr int W = DNADIFF_VW;

typedef float vf __attribute__((vector_size(W * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(W * sizeof(float))));
// The same vector at any float alignment, allowed to alias float arrays: unaligned loads/stores.
typedef float vfu __attribute__((vector_size(W * sizeof(float)), aligned(alignof(float)), may_alias));

constexpr int64_t kMaxState = 256;

#define DNADIFF_INLINE inline __attribute__((always_inline))

#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 16")
#endif

DNADIFF_INLINE vf splat(float x) { return vf{} + x; }

// max/min with x86's semantics (the second operand when either is NaN): one instruction where
// the vector width matches a native register, else the equivalent select.
DNADIFF_INLINE vf vmax(vf a, vf b) {
#if defined(__AVX512F__) && DNADIFF_VW == 16
  return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX__) && DNADIFF_VW == 8
  return (vf)_mm256_max_ps((__m256)a, (__m256)b);
#else
  return a > b ? a : b;
#endif
}

DNADIFF_INLINE vf vmin(vf a, vf b) {
#if defined(__AVX512F__) && DNADIFF_VW == 16
  return (vf)_mm512_min_ps((__m512)a, (__m512)b);
#elif defined(__AVX__) && DNADIFF_VW == 8
  return (vf)_mm256_min_ps((__m256)a, (__m256)b);
#else
  return a < b ? a : b;
#endif
}

template <bool FULL>
DNADIFF_INLINE vf load(const float* p, int cnt) {
  vf v;
  if constexpr (FULL) {
    v = *reinterpret_cast<const vfu*>(p);
  } else {
    v = vf{};
    for (int i = 0; i < cnt; ++i) v[i] = p[i];
  }
  return v;
}

template <bool FULL>
DNADIFF_INLINE void store(float* p, vf v, int cnt) {
  if constexpr (FULL) {
    *reinterpret_cast<vfu*>(p) = v;
  } else {
    for (int i = 0; i < cnt; ++i) p[i] = v[i];
  }
}

// Columns of a row-major (channels x cols) block as vectors over its first cnt channels:
// out[k][lane] = m[lane * cols + k] (per-lane copies of per-channel parameters).
DNADIFF_INLINE void load_columns(const float* m, int64_t cols, int cnt, vf* out) {
  for (int64_t k = 0; k < cols; ++k) {
    vf a = vf{};
    for (int i = 0; i < cnt; ++i) a[i] = m[i * cols + k];
    out[k] = a;
  }
}

// Store, or add to what is there (a tensor shared by the groups, after its first group).
template <bool FULL>
DNADIFF_INLINE void put(float* p, vf v, int cnt, bool add) {
  store<FULL>(p, add ? load<FULL>(p, cnt) + v : v, cnt);
}

DNADIFF_INLINE float hsum(vf v) {
  float s = 0.f;
  for (int i = 0; i < W; ++i) s += v[i];
  return s;
}

// Each elementary function below works on P vectors in place, stage by stage (ST: one statement
// for each of the P vectors): P independent dependency chains side by side keep the FP pipes busy
// where one chain would wait on each operation's latency. Measured (AVX2, softplus of delta and
// the SiLU gate per position): 4 chains 36% faster than 1; 2 and 8 chains slower than 4.
#define ST(...) UNROLL for (int q = 0; q < P; ++q) { __VA_ARGS__; }
constexpr int kPos = 4;  // positions whose per-position functions are computed together

// exp(x) = 2^(x log2(e)): x log2(e) = m + r with m = round(x log2(e)) and |r| <= 1/2, formed
// with log2(e) split in two floats (r = x hi - m exactly rounded, then + x lo: an error below
// 2^-24 in r), then a degree-6 polynomial of 2^r fitted for least maximum relative error on
// [-1/2, 1/2] (1.9e-9: the float rounding dominates; measured against double over every float
// in [-87, 30]: 1.2 ulp at most). The input is clamped to [-126 ln2, 127 ln2]: results below
// 2^-126 come out as 2^-126 (exp would be denormal or 0), above 2^127 as 2^127 (exp would
// overflow); NaN stays NaN. NONPOS: the caller guarantees x <= 0, which skips the upper clamp.
// The rounding constant 1.5 * 2^23 + 127 leaves m + 127 in t's low bits, the exponent field
// of 2^m once shifted.
constexpr float kLog2e = 1.44269504088896341f;      // log2(e) rounded to float
constexpr float kLog2eLo = 1.925963033500011e-08f;  // log2(e) - kLog2e
template <int P, bool NONPOS = false>
DNADIFF_INLINE void vexp_n(vf* x) {
  const vf magic = splat(12583039.0f);  // 1.5 * 2^23 + 127
  vf t[P], r[P], p[P];
  ST(x[q] = vmax(splat(-87.33654475f), x[q]))  // NaN passes through
  if constexpr (!NONPOS) {
    ST(x[q] = vmin(splat(88.02969193f), x[q]))
  }
  ST(t[q] = x[q] * kLog2e + magic)
  ST(r[q] = x[q] * kLog2e - (t[q] - magic))
  ST(r[q] = x[q] * kLog2eLo + r[q])
  ST(p[q] = splat(1.5345805149991065e-4f) * r[q] + 1.3399930903688073e-3f)
  ST(p[q] = p[q] * r[q] + 9.618489071726799e-3f)
  ST(p[q] = p[q] * r[q] + 5.550328642129898e-2f)
  ST(p[q] = p[q] * r[q] + 2.4022646248340607e-1f)
  ST(p[q] = p[q] * r[q] + 6.931471824645996e-1f)
  ST(p[q] = p[q] * r[q] + 1.0f)
  ST(x[q] = p[q] * (vf)((vi)t[q] << 23))
}

// 2^x for the exponent of a decay, x = delta * A * log2(e) (A scaled by log2(e) once per block, so
// there is no Cody-Waite step): x = m + r with m = round(x) and |r| <= 1/2 exactly, then a degree-5
// polynomial of 2^r fitted for least maximum relative error on [-1/2, 1/2] (7.5e-8; 2 ulp after
// float rounding; rounding A log2(e) and delta times it adds |delta A| 2^-23 at most, as rounding
// delta * A does for any exp of it). The input is clamped to [-125, 127]: results below 2^-125 come out as 2^-125,
// above 2^127 as 2^127; NaN stays NaN. NONPOS: the caller guarantees x <= 0, which skips the upper
// clamp; IN_RANGE: the caller guarantees -125 <= x <= 0, which skips both (neither would change x).
// The rounding constant 1.5 * 2^23 + 127 leaves m + 127 in t's low bits, the exponent field
// of 2^m once shifted.
template <int P, bool NONPOS = false, bool IN_RANGE = false>
DNADIFF_INLINE void vexp2_n(vf* x) {
  const vf magic = splat(12583039.0f);  // 1.5 * 2^23 + 127
  vf t[P], r[P], p[P];
  if constexpr (!IN_RANGE) {
    ST(x[q] = vmax(splat(-125.0f), x[q]))  // NaN passes through
  }
  if constexpr (!NONPOS && !IN_RANGE) {
    ST(x[q] = vmin(splat(127.0f), x[q]))
  }
  ST(t[q] = x[q] + magic)
  ST(r[q] = x[q] - (t[q] - magic))
  ST(p[q] = splat(1.327647129073739e-3f) * r[q] + 9.675541892647743e-3f)
  ST(p[q] = p[q] * r[q] + 5.550713092088699e-2f)
  ST(p[q] = p[q] * r[q] + 2.402212023735046e-1f)
  ST(p[q] = p[q] * r[q] + 6.931469440460205e-1f)
  ST(p[q] = p[q] * r[q] + 1.0000001192092896f)
  ST(x[q] = p[q] * (vf)((vi)t[q] << 23))
}

template <bool NONPOS = false, bool IN_RANGE = false>
DNADIFF_INLINE vf vexp2(vf x) {
  vexp2_n<1, NONPOS, IN_RANGE>(&x);
  return x;
}

// States whose decays are computed together (vexp2_n), and partial sums of every reduction over
// the states (a shorter dependency chain; summed in this order in forward and backward alike).
// Measured (d_state 16, AVX2, 1 thread, batch 8 x L 1024 forward): 4 states 4-9% faster than 2 or 8;
// 2 partial sums 3% faster than 4.
constexpr int kP = 4;
constexpr int kY = 2;

DNADIFF_INLINE vf vabs(vf x) { return (vf)((vi)x & 0x7fffffff); }

// softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(v), v = exp(-|x|) in (0, 1]: no overflow, no
// threshold (above 16 the log1p term is below half an ulp of x, so the result is x, as torch's).
// log1p(v) = 2 atanh(s) = s f(s^2) with s = v / (2 + v) in (0, 1/3] and f(w) = 2 atanh(sqrt w) /
// sqrt w, a degree-4 polynomial on [0, 1/9] fitted for least maximum relative error (4e-9).
// Measured against double over every float in [-87, 30]: 3.7 ulp at most (x near -2, where v's
// and s's roundings add up). With sig, also sigmoid(x) = (x >= 0 ? 1 : v) / (1 + v), its
// derivative, from the same exp. NaN stays NaN.
template <int P>
DNADIFF_INLINE void vsoftplus_n(vf* x, vf* sig = nullptr) {
  vf v[P], s[P], w[P], f[P];
  ST(v[q] = -vabs(x[q]))
  vexp_n<P, true>(v);
  ST(s[q] = v[q] / (2.0f + v[q]))
  ST(w[q] = s[q] * s[q])
  ST(f[q] = splat(0.2817833423614502f) * w[q] + 0.2796059846878052f)
  ST(f[q] = f[q] * w[q] + 0.4002491235733032f)
  ST(f[q] = f[q] * w[q] + 0.6666631698608398f)
  ST(f[q] = f[q] * w[q] + 2.0f)
  if (sig) {
    ST(sig[q] = (x[q] >= 0.f ? splat(1.0f) : v[q]) / (1.0f + v[q]))
  }
  ST(x[q] = s[q] * f[q] + vmax(vf{}, x[q]))  // vmax returns x when x is NaN
}

// sigmoid(x) = 1 / (1 + exp(-x)).
template <int P>
DNADIFF_INLINE void vsigmoid_n(vf* x) {
  vf e[P];
  ST(e[q] = -x[q])
  vexp_n<P>(e);
  ST(x[q] = 1.0f / (1.0f + e[q]))
}

// silu(x) = x / (1 + exp(-x)).
template <int P>
DNADIFF_INLINE void vsilu_n(vf* x) {
  vf e[P];
  ST(e[q] = -x[q])
  vexp_n<P>(e);
  ST(x[q] = x[q] / (1.0f + e[q]))
}

// f (one of the *_n functions) over positions [0, m) of spans, kPos at a time; the spans are
// padded to a multiple of kPos (entries past m are computed and ignored).
template <class F>
DNADIFF_INLINE void per_position(int64_t m, F f) {
  for (int64_t j = 0; j < m; j += kPos) f(j);
}

// Strides (group, batch, position, channel) of a 4-d fp32 tensor; the group stride is 0 when
// the tensor has one group (shared by all).
struct View {
  float* p = nullptr;
  int64_t g = 0, b = 0, l = 0, c = 1;
  float* at(int64_t gi, int64_t bi, int64_t t) const { return p + gi * g + bi * b + t * l; }
};

View view_of(const at::Tensor& t) {
  TORCH_CHECK(t.dim() == 4, "expected a 4-d (group, batch, length, channel) tensor, got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat, "expected float32, got ", t.scalar_type());
  View v;
  v.p = t.data_ptr<float>();
  v.g = t.size(0) == 1 ? 0 : t.stride(0);
  v.b = t.stride(1);
  v.l = t.stride(2);
  v.c = t.size(3) == 1 ? 1 : t.stride(3);
  return v;
}

View view_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? view_of(*t) : View{};
}

View channels_last_view(const at::Tensor& t) {
  View v = view_of(t);
  TORCH_CHECK(v.c == 1, "expected unit stride on the last axis, got strides ", t.strides());
  return v;
}

const float* ptr_or_null(const std::optional<at::Tensor>& t) {
  if (!t.has_value()) return nullptr;
  TORCH_CHECK(t->is_contiguous() && t->scalar_type() == at::kFloat, "parameters must be contiguous float32");
  return t->data_ptr<float>();
}

// ---- W x W transpose in registers (log2 W stages of two-input shuffles; GCC and Clang).
template <int B, size_t... L>
inline void mix(vf& a, vf& b, std::index_sequence<L...>) {
#if defined(__clang__)
  const vf lo = __builtin_shufflevector(a, b, ((L & B) ? int(W + L - B) : int(L))...);
  const vf hi = __builtin_shufflevector(a, b, ((L & B) ? int(W + L) : int(L + B))...);
#else
  constexpr vi mlo = {((L & B) ? int(W + L - B) : int(L))...};
  constexpr vi mhi = {((L & B) ? int(W + L) : int(L + B))...};
  const vf lo = __builtin_shuffle(a, b, mlo);
  const vf hi = __builtin_shuffle(a, b, mhi);
#endif
  a = lo;
  b = hi;
}

template <int B>
inline void transpose_stage(vf* r) {
  if constexpr (B < W) {
    for (int i = 0; i < W; ++i)
      if (!(i & B)) mix<B>(r[i], r[i + B], std::make_index_sequence<W>{});
    transpose_stage<2 * B>(r);
  }
}

// Tiles of up to W positions of one block of channels, as one vector per position, in
// processing order: vec[j] holds position pos(i + j). Channels-last tensors load each vector
// directly; position-contiguous ones (channel stride != 1, position stride 1) load W rows and
// transpose them; anything else (and partial tiles) goes element by element.
struct Order {
  int64_t L;
  bool rev;
  int64_t pos(int64_t i) const { return rev ? L - 1 - i : i; }
};

template <bool FULL>
DNADIFF_INLINE void load_tile(const View& v, int64_t g, int64_t b, int64_t c0, int cnt, const Order& o, int64_t i, int m,
                      vf* out) {
  if (v.c == 1) {
    for (int j = 0; j < m; ++j) out[j] = load<FULL>(v.at(g, b, o.pos(i + j)) + c0, cnt);
  } else if (FULL && m == W && v.l == 1) {
    const int64_t lo = o.rev ? o.L - i - W : i;
    const float* base = v.at(g, b, lo) + c0 * v.c;
    vf r[W];
    for (int q = 0; q < W; ++q) r[q] = load<true>(base + q * v.c, W);
    transpose_stage<1>(r);
    for (int j = 0; j < W; ++j) out[j] = r[o.rev ? W - 1 - j : j];
  } else {
    for (int j = 0; j < m; ++j) {
      const float* p = v.at(g, b, o.pos(i + j)) + c0 * v.c;
      vf x = vf{};
      for (int q = 0; q < cnt; ++q) x[q] = p[q * v.c];
      out[j] = x;
    }
  }
}

// Store (or, with add, accumulate) a tile written by load_tile's rules.
template <bool FULL>
DNADIFF_INLINE void store_tile(const View& v, int64_t g, int64_t b, int64_t c0, int cnt, const Order& o, int64_t i, int m,
                       const vf* in, bool add) {
  if (v.c == 1) {
    for (int j = 0; j < m; ++j) put<FULL>(v.at(g, b, o.pos(i + j)) + c0, in[j], cnt, add);
  } else if (FULL && m == W && v.l == 1) {
    const int64_t lo = o.rev ? o.L - i - W : i;
    float* base = v.at(g, b, lo) + c0 * v.c;
    vf r[W];
    for (int j = 0; j < W; ++j) r[o.rev ? W - 1 - j : j] = in[j];
    transpose_stage<1>(r);
    for (int q = 0; q < W; ++q) put<true>(base + q * v.c, r[q], W, add);
  } else {
    for (int j = 0; j < m; ++j) {
      float* p = v.at(g, b, o.pos(i + j)) + c0 * v.c;
      for (int q = 0; q < cnt; ++q) p[q * v.c] = add ? p[q * v.c] + in[j][q] : in[j][q];
    }
  }
}

// Spans of up to kSpan positions, tile by tile: one tensor's rows are visited for the whole span
// before the next tensor's, which keeps the pages touched at a time (and TLB misses) few when the
// tensor is position-contiguous.
constexpr int kSpan = 4 * W;

template <bool FULL>
DNADIFF_INLINE void load_span(const View& v, int64_t g, int64_t b, int64_t c0, int cnt, const Order& o, int64_t i, int m,
                      vf* out) {
  for (int j = 0; j < m; j += W) load_tile<FULL>(v, g, b, c0, cnt, o, i + j, std::min(W, m - j), out + j);
}

template <bool FULL>
DNADIFF_INLINE void store_span(const View& v, int64_t g, int64_t b, int64_t c0, int cnt, const Order& o, int64_t i, int m,
                       const vf* in, bool add) {
  for (int j = 0; j < m; j += W) store_tile<FULL>(v, g, b, c0, cnt, o, i + j, std::min(W, m - j), in + j, add);
}

struct Scan {
  int64_t G, Bt, L, d, n, S, nseg;
  View u, delta, Bm, Cm, z, out;  // Bm, Cm: the "channel" axis is the state axis
  const float *A, *D, *bias;
  // With delta_proj (G, d, r): delta holds the low-rank input (its "channel" axis is the rank
  // axis) and the scan's delta is its product with delta_proj, formed per position in registers
  // (dt_proj fused: the full-width delta is never written or read).
  const float* dproj;
  int64_t r;
  bool softplus;
  bool nonpos;      // delta >= 0 (softplus) and A <= 0: every decay exponent is <= 0
  int64_t reverse;  // bit g: group g runs backwards in position
  float* last;      // (G, Bt, d, n) or null
  float* ckpt;      // (G, Bt, nseg, n, d) or null
  Order order(int64_t g) const { return Order{L, bool((reverse >> g) & 1)}; }
  // delta (before its bias) at positions [i0, i0 + m) of a block, in processing order: read, or
  // formed from the low-rank input and the delta_proj columns Pv from block_params.
  template <bool FULL>
  DNADIFF_INLINE void delta_span(int64_t g, int64_t b, int64_t c0, int cnt, const Order& o, int64_t i0, int m,
                                 const vf* Pv, vf* out) const {
    if (!dproj) {
      load_span<FULL>(delta, g, b, c0, cnt, o, i0, m, out);
      return;
    }
    for (int j = 0; j < m; ++j) {
      const float* x = delta.at(g, b, o.pos(i0 + j));
      vf acc = Pv[0] * x[0];
      for (int64_t k = 1; k < r; ++k) acc += Pv[k] * x[k * delta.c];
      out[j] = acc;
    }
  }
  float* ck(int64_t g, int64_t b, int64_t s, int64_t k) const { return ckpt + (((g * Bt + b) * nseg + s) * n + k) * d; }
};

// Per-lane copies of a block's parameters: A[g, c0 + lane, k] for every k, D, the delta bias and,
// with delta_proj, its columns Pv[k] = delta_proj[g, c0 + lane, k].
template <bool FULL>
void block_params(const Scan& s, int64_t g, int64_t c0, int cnt, vf* Av, vf& Dv, vf& bv, vf* Pv) {
  load_columns(s.A + (g * s.d + c0) * s.n, s.n, cnt, Av);
  Dv = s.D ? load<FULL>(s.D + g * s.d + c0, cnt) : vf{};
  bv = s.bias ? load<FULL>(s.bias + g * s.d + c0, cnt) : vf{};
  if (s.dproj) load_columns(s.dproj + (g * s.d + c0) * s.r, s.r, cnt, Pv);
}

// One step of a block's state recursion, shared by the forward pass and the backward pass's
// recomputation (so both see the same decays and sums): hn[k] = 2^(dt A2[k]) hp[k] + dtu B[k],
// returning y0 + sum_k hn[k] C[k] in kY partial sums; with SAVE, the decays go to a[k]. hn may
// be hp (the forward pass updates its state in place). A2 is A scaled by log2(e). IN_RANGE: every
// exponent dt A2[k] is known to lie in [-125, 0] (exponents_in_range), so the decays skip their clamp.
template <int NC, bool NP, bool SAVE, bool IN_RANGE = false>
DNADIFF_INLINE vf state_step(int64_t n, const vf* A2, vf dt, vf dtu, vf y0, const float* Bt, const float* Ct,
                             int64_t sk, const vf* hp, vf* hn, vf* a) {
  vf y[kY] = {y0};
  if constexpr (NC > 0 && NC % kP == 0) {
    UNROLL for (int64_t k = 0; k < NC; k += kP) {
      vf e[kP];
      UNROLL for (int q = 0; q < kP; ++q) e[q] = dt * A2[k + q];
      vexp2_n<kP, NP, IN_RANGE>(e);
      UNROLL for (int q = 0; q < kP; ++q) {
        if constexpr (SAVE) a[k + q] = e[q];
        hn[k + q] = e[q] * hp[k + q] + dtu * Bt[(k + q) * sk];
        y[(k + q) % kY] += hn[k + q] * Ct[(k + q) * sk];
      }
    }
  } else {
    UNROLL for (int64_t k = 0; k < n; ++k) {
      const vf e = vexp2<NP, IN_RANGE>(dt * A2[k]);
      if constexpr (SAVE) a[k] = e;
      hn[k] = e * hp[k] + dtu * Bt[k * sk];
      y[k % kY] += hn[k] * Ct[k * sk];
    }
  }
  UNROLL for (int q = 1; q < kY; ++q) y[0] += y[q];
  return y[0];
}

// The largest decay rate of each lane, max_k -A2[k] (A2 <= 0: the decay exponents are <= 0).
DNADIFF_INLINE vf max_rate(const vf* A2, int64_t n) {
  vf m = vf{};
  for (int64_t k = 0; k < n; ++k) m = vmax(m, -A2[k]);
  return m;
}

// Whether every decay exponent dt[j] A2[k] of positions [0, m) lies in [-125, 0], given A2 <= 0,
// dt >= 0 and rate = max_rate(A2): then the decays need no clamp (state_step's IN_RANGE), which is
// the common case by far (softplus deltas are small). NaN or infinity fails the test.
DNADIFF_INLINE bool exponents_in_range(const vf* dt, int64_t m, vf rate) {
  vi ok = ~vi{};
  for (int64_t j = 0; j < m; ++j) ok &= (dt[j] * rate <= 125.0f);
  for (int i = 0; i < W; ++i)
    if (!ok[i]) return false;
  return true;
}

// Calls f(std::true_type) when the exponents are in range (NP and exponents_in_range), else
// f(std::false_type): the state loop compiled with and without the decay clamp.
template <bool NP, class F>
DNADIFF_INLINE void with_range(const vf* dt, int64_t m, vf rate, F f) {
  if (NP && exponents_in_range(dt, m, rate))
    f(std::true_type{});
  else
    f(std::false_type{});
}

// NC > 0: the state size is the compile-time NC (the loops over it unroll and the state can stay
// in registers); NC == 0: the state size is s.n, kept in the caller's buffers.
template <bool FULL, int NC, bool NP>
void scan_fwd_block(const Scan& s, int64_t g, int64_t b, int64_t c0, int cnt, vf* hbuf, vf* Abuf, vf* Pv) {
  constexpr bool FIXED = NC > 0;
  const int64_t n = FIXED ? NC : s.n;
  vf hl[FIXED ? NC : 1], Al[FIXED ? NC : 1];
  vf* h = FIXED ? hl : hbuf;
  vf* Av = FIXED ? Al : Abuf;
  vf Dv, bv;
  block_params<FULL>(s, g, c0, cnt, Av, Dv, bv, Pv);
  UNROLL for (int64_t k = 0; k < n; ++k) {
    Av[k] *= kLog2e;  // the decays are 2^(delta A log2(e))
    h[k] = vf{};
  }
  const vf rate = max_rate(Av, n);
  // Groups summed into one output with one shared z: the gate multiplies their sum, applied
  // once by the last group (sum_g y_g silu(z) = (sum_g y_g) silu(z): one SiLU, not G).
  const bool summed = s.out.g == 0;
  const bool gate_sum = summed && s.z.p && s.z.g == 0 && s.G > 1;
  const bool gate_own = s.z.p && !gate_sum;           // this group's y times its gate
  const bool gate_total = gate_sum && g == s.G - 1;  // the groups' sum times the gate
  const bool add = g > 0 && summed;
  const Order o = s.order(g);
  const int64_t sk = s.Bm.c;
  static_assert(kSpan % kPos == 0, "spans hold whole groups of kPos positions");
  vf td[kSpan] = {}, tu[kSpan], tdu[kSpan], tz[kSpan] = {}, ty[kSpan], tp[kSpan];
  for (int64_t i0 = 0; i0 < s.L; i0 += kSpan) {
    const int m = (int)std::min<int64_t>(kSpan, s.L - i0);
    s.delta_span<FULL>(g, b, c0, cnt, o, i0, m, Pv, td);
    load_span<FULL>(s.u, g, b, c0, cnt, o, i0, m, tu);
    if (gate_own || gate_total) load_span<FULL>(s.z, g, b, c0, cnt, o, i0, m, tz);
    // The per-position work first, for the whole span (independent positions: no latency chain
    // in the state loop below): delta, delta * u, and the gate.
    for (int j = 0; j < m; ++j) td[j] += bv;
    per_position(m, [&](int64_t j) {
      if (s.softplus) vsoftplus_n<kPos>(td + j);
      if (gate_own || gate_total) vsilu_n<kPos>(tz + j);
    });
    for (int j = 0; j < m; ++j) {
      tdu[j] = td[j] * tu[j];
      ty[j] = Dv * tu[j];
    }
    with_range<NP>(td, m, rate, [&](auto in_range) {
      for (int j = 0; j < m; ++j) {
        const int64_t i = i0 + j, t = o.pos(i);
        if (s.ckpt && i > 0 && i % s.S == 0) {
          UNROLL for (int64_t k = 0; k < n; ++k) store<FULL>(s.ck(g, b, i / s.S, k) + c0, h[k], cnt);
        }
        const vf dt = td[j], dtu = tdu[j];
        const float* Bt = s.Bm.at(g, b, t);
        const float* Ct = s.Cm.at(g, b, t);
        const vf y = state_step<NC, NP, false, in_range>(n, Av, dt, dtu, ty[j], Bt, Ct, sk, h, h, nullptr);
        ty[j] = gate_own ? y * tz[j] : y;
      }
    });
    if (gate_total) {  // the last group: (earlier groups' sum + y) * silu(z), stored
      load_span<FULL>(s.out, g, b, c0, cnt, o, i0, m, tp);
      for (int j = 0; j < m; ++j) ty[j] = (tp[j] + ty[j]) * tz[j];
    }
    store_span<FULL>(s.out, g, b, c0, cnt, o, i0, m, ty, add && !gate_total);
  }
  if (s.last) {
    float* last = s.last + ((g * s.Bt + b) * s.d + c0) * n;
    for (int i = 0; i < cnt; ++i)
      for (int64_t k = 0; k < n; ++k) last[i * n + k] = h[k][i];
  }
}

struct ScanGrads {
  View gout, gu, gdelta, gz;
  float* gB;     // (chunks, G, Bt, L, n)
  float* gC;     // (chunks, G, Bt, L, n)
  float* gA;     // (G, Bt, d, n)
  float* gD;     // (G, Bt, d) or null
  float* gbias;  // (G, Bt, d) or null
  int64_t chunks;
};

// Per-thread scratch of the backward pass.
struct BwdWork {
  std::vector<vf> h, a, dt, u, y, sig, go, zz, sz, pb, pc, gh, gA, gD, gbias, Av, A2, Pv;
  // dt, sig, sz: padded to whole groups of kPos positions (per_position)
  BwdWork(int64_t S, int64_t n, int64_t nblk, int64_t r)
      : h((S + 1) * n), a(S * n), dt(padded(S)), u(S), y(S), sig(padded(S)), go(S), zz(S), sz(padded(S)),
        pb(S * n), pc(S * n), gh(nblk * n), gA(nblk * n), gD(nblk), gbias(nblk), Av(n), A2(n), Pv(r) {}
  static int64_t padded(int64_t S) { return (S + kPos - 1) / kPos * kPos; }
};

// One block over one segment [i0, i0 + len) of group g: recompute the states, then walk back.
template <bool FULL, int NC, bool NP>
void scan_bwd_block_segment(const Scan& s, const ScanGrads& gr, BwdWork& w, int64_t g, int64_t b, int64_t c0,
                            int cnt, int64_t seg, int64_t i0, int64_t len, int64_t jb, bool first_seg) {
  constexpr bool FIXED = NC > 0;
  const int64_t n = FIXED ? NC : s.n;
  const Order o = s.order(g);
  const int64_t sk = s.Bm.c;
  vf Dv, bv;
  vf* Av = w.Av.data();
  vf* A2 = w.A2.data();
  block_params<FULL>(s, g, c0, cnt, Av, Dv, bv, w.Pv.data());
  for (int64_t k = 0; k < n; ++k) A2[k] = Av[k] * kLog2e;  // the decays are 2^(delta A log2(e))
  vf* gh = w.gh.data() + jb * n;
  vf* gA = w.gA.data() + jb * n;
  if (first_seg) {
    for (int64_t k = 0; k < n; ++k) gh[k] = gA[k] = vf{};
    w.gD[jb] = w.gbias[jb] = vf{};
  }
  vf* H = w.h.data();
  if (seg == 0) {
    for (int64_t k = 0; k < n; ++k) H[k] = vf{};
  } else {
    for (int64_t k = 0; k < n; ++k) H[k] = load<FULL>(s.ck(g, b, seg, k) + c0, cnt);
  }
  // Recompute the segment's states (inputs read tensor by tensor for the whole segment).
  vf* dtb = w.dt.data();
  s.delta_span<FULL>(g, b, c0, cnt, o, i0, (int)len, w.Pv.data(), dtb);
  load_span<FULL>(s.u, g, b, c0, cnt, o, i0, (int)len, w.u.data());
  for (int64_t j = 0; j < len; ++j) dtb[j] += bv;
  if (s.softplus) per_position(len, [&](int64_t j) { vsoftplus_n<kPos>(dtb + j, w.sig.data() + j); });
  with_range<NP>(dtb, len, max_rate(A2, n), [&](auto in_range) {
    for (int64_t j = 0; j < len; ++j) {
      const int64_t t = o.pos(i0 + j);
      const vf dt = dtb[j];
      const vf uu = w.u[j];
      const vf dtu = dt * uu;
      const float* Bt = s.Bm.at(g, b, t);
      const float* Ct = s.Cm.at(g, b, t);
      w.y[j] = state_step<NC, NP, true, in_range>(n, A2, dt, dtu, Dv * uu, Bt, Ct, sk, H + j * n,
                                                  H + (j + 1) * n, w.a.data() + j * n);
    }
  });
  // Walk the segment backwards; dL/du, dL/ddelta, dL/dz replace gout, delta, z in the buffers.
  const bool add_z = g > 0 && gr.gz.g == 0;
  vf gD = w.gD[jb], gbias = w.gbias[jb];
  vf ghl[FIXED ? NC : 1];
  vf* ghr = FIXED ? ghl : gh;
  if (FIXED) {
    UNROLL for (int64_t k = 0; k < n; ++k) ghl[k] = gh[k];
  }
  vf* gob = w.go.data();
  vf* zb = w.zz.data();
  load_span<FULL>(gr.gout, g, b, c0, cnt, o, i0, (int)len, gob);
  vf* szb = w.sz.data();
  if (s.z.p) {
    load_span<FULL>(s.z, g, b, c0, cnt, o, i0, (int)len, zb);
    std::copy(zb, zb + len, szb);
    per_position(len, [&](int64_t j) { vsigmoid_n<kPos>(szb + j); });
  }
  for (int64_t j = len - 1; j >= 0; --j) {
    const int64_t t = o.pos(i0 + j);
    const vf go = gob[j];
    const vf uu = w.u[j];
    vf gy = go;
    if (s.z.p) {
      const vf zz = zb[j];
      const vf sg = szb[j];
      gy = go * zz * sg;
      zb[j] = go * w.y[j] * sg * (1.0f + zz * (1.0f - sg));
    }
    gD += gy * uu;
    const vf dt = dtb[j];
    const vf dtu = dt * uu;
    const float* Bt = s.Bm.at(g, b, t);
    const float* Ct = s.Cm.at(g, b, t);
    const vf* hp = H + j * n;
    const vf* hn = H + (j + 1) * n;
    const vf* aj = w.a.data() + j * n;
    vf* pb = w.pb.data() + j * n;
    vf* pc = w.pc.data() + j * n;
    vf gdtu[kY] = {}, gdt[kY] = {};  // partial sums, as y
    UNROLL for (int64_t k = 0; k < n; ++k) {
      pc[k] += gy * hn[k];
      const vf gk = gy * Ct[k * sk] + ghr[k];
      pb[k] += gk * dtu;
      gdtu[k % kY] += gk * Bt[k * sk];
      const vf ga = gk * aj[k];  // dL/dh_{t-1} through the decay
      const vf gda = ga * hp[k];  // dL/d(delta A)
      gdt[k % kY] += gda * Av[k];
      gA[k] += gda * dt;
      ghr[k] = ga;
    }
    UNROLL for (int q = 1; q < kY; ++q) {
      gdtu[0] += gdtu[q];
      gdt[0] += gdt[q];
    }
    gob[j] = gdtu[0] * dt + gy * Dv;
    gdt[0] += gdtu[0] * uu;
    if (s.softplus) gdt[0] *= w.sig[j];
    gbias += gdt[0];
    dtb[j] = gdt[0];
  }
  store_span<FULL>(gr.gu, g, b, c0, cnt, o, i0, (int)len, gob, false);
  store_span<FULL>(gr.gdelta, g, b, c0, cnt, o, i0, (int)len, dtb, false);
  if (s.z.p) store_span<FULL>(gr.gz, g, b, c0, cnt, o, i0, (int)len, zb, add_z);
  if (FIXED) {
    UNROLL for (int64_t k = 0; k < n; ++k) gh[k] = ghl[k];
  }
  w.gD[jb] = gD;
  w.gbias[jb] = gbias;
}

template <int NC, bool NP>
void scan_bwd_segment_blocks(const Scan& s, const ScanGrads& gr, BwdWork& w, int64_t g, int64_t b, int64_t seg,
                             int64_t i0, int64_t len, int64_t blk0, int64_t blk1) {
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const int64_t c0 = blk * W;
    const int cnt = (int)std::min<int64_t>(W, s.d - c0);
    const bool first = seg == s.nseg - 1;
    if (cnt == W)
      scan_bwd_block_segment<true, NC, NP>(s, gr, w, g, b, c0, cnt, seg, i0, len, blk - blk0, first);
    else
      scan_bwd_block_segment<false, NC, NP>(s, gr, w, g, b, c0, cnt, seg, i0, len, blk - blk0, first);
  }
}

void scan_bwd_task(const Scan& s, const ScanGrads& gr, int64_t b, int64_t chunk, int64_t blk0, int64_t blk1) {
  const int64_t n = s.n, S = s.S;
  BwdWork w(S, n, blk1 - blk0, s.r);
  for (int64_t g = 0; g < s.G; ++g) {
    const Order o = s.order(g);
    for (int64_t seg = s.nseg - 1; seg >= 0; --seg) {
      const int64_t i0 = seg * S, len = std::min(S, s.L - i0);
      std::fill(w.pb.begin(), w.pb.begin() + len * n, vf{});
      std::fill(w.pc.begin(), w.pc.begin() + len * n, vf{});
      if (n == 16 && s.nonpos)
        scan_bwd_segment_blocks<16, true>(s, gr, w, g, b, seg, i0, len, blk0, blk1);
      else if (n == 16)
        scan_bwd_segment_blocks<16, false>(s, gr, w, g, b, seg, i0, len, blk0, blk1);
      else if (s.nonpos)
        scan_bwd_segment_blocks<0, true>(s, gr, w, g, b, seg, i0, len, blk0, blk1);
      else
        scan_bwd_segment_blocks<0, false>(s, gr, w, g, b, seg, i0, len, blk0, blk1);
      const int64_t row = ((chunk * s.G + g) * s.Bt + b) * s.L;
      for (int64_t j = 0; j < len; ++j) {
        const int64_t t = o.pos(i0 + j);
        for (int64_t k = 0; k < n; ++k) {
          gr.gB[(row + t) * n + k] = hsum(w.pb[j * n + k]);
          gr.gC[(row + t) * n + k] = hsum(w.pc[j * n + k]);
        }
      }
    }
    for (int64_t blk = blk0; blk < blk1; ++blk) {
      const int64_t c0 = blk * W, jb = blk - blk0;
      const int cnt = (int)std::min<int64_t>(W, s.d - c0);
      float* gA = gr.gA + ((g * s.Bt + b) * s.d + c0) * n;
      for (int i = 0; i < cnt; ++i)
        for (int64_t k = 0; k < n; ++k) gA[i * n + k] = w.gA[jb * n + k][i];
      const int64_t off = (g * s.Bt + b) * s.d + c0;
      for (int i = 0; i < cnt; ++i) {
        if (gr.gD) gr.gD[off + i] = w.gD[jb][i];
        if (gr.gbias) gr.gbias[off + i] = w.gbias[jb][i];
      }
    }
  }
}

Scan make_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
               const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
               const std::optional<at::Tensor>& bias, bool softplus, int64_t reverse, int64_t S,
               const std::optional<at::Tensor>& delta_proj) {
  TORCH_CHECK(u.dim() == 4, "u must be (group, batch, length, d), got ", u.sizes());
  Scan s;
  s.G = u.size(0);
  s.Bt = u.size(1);
  s.L = u.size(2);
  s.d = u.size(3);
  TORCH_CHECK(A.dim() == 3 && A.size(0) == s.G && A.size(1) == s.d, "A must be (G, d, n), got ", A.sizes());
  s.n = A.size(2);
  TORCH_CHECK(s.n >= 1 && s.n <= kMaxState, "d_state must be in 1..", kMaxState, ", got ", s.n);
  TORCH_CHECK(s.G <= 62, "at most 62 groups, got ", s.G);
  TORCH_CHECK(S >= 1, "segment length must be >= 1");
  s.S = (S + W - 1) / W * W;  // segments start on tile boundaries
  s.nseg = (s.L + s.S - 1) / s.S;
  s.u = view_of(u);
  s.delta = view_of(delta);
  s.dproj = ptr_or_null(delta_proj);
  s.r = 0;
  if (s.dproj) {
    TORCH_CHECK(delta_proj->dim() == 3 && delta_proj->size(0) == s.G && delta_proj->size(1) == s.d,
                "delta_proj must be (G, d, r), got ", delta_proj->sizes());
    s.r = delta_proj->size(2);
    TORCH_CHECK(s.r >= 1 && delta.size(3) == s.r && delta.size(1) == s.Bt && delta.size(2) == s.L,
                "with delta_proj (G, d, ", s.r, "), delta must be the low-rank input (G, Bt, L, ", s.r, "), got ",
                delta.sizes());
  }
  s.Bm = view_of(B);
  s.Cm = view_of(C);
  TORCH_CHECK(s.Bm.c == s.Cm.c, "B and C must have the same state stride");
  s.z = view_or_null(z);
  s.A = ptr_or_null(A);
  s.D = ptr_or_null(D);
  s.bias = ptr_or_null(bias);
  s.softplus = softplus;
  s.nonpos = softplus && std::all_of(s.A, s.A + s.G * s.d * s.n, [](float a) { return a <= 0.f; });
  s.reverse = reverse;
  s.last = nullptr;
  s.ckpt = nullptr;
  return s;
}

// Output tensor like `like` (same memory layout: channels-last or position-contiguous).
at::Tensor empty_like_layout(const at::Tensor& like, int64_t groups) {
  auto sizes = like.sizes().vec();
  sizes[0] = groups;
  if (like.size(3) > 1 && like.stride(3) != 1 && like.stride(2) == 1)  // (G, b, d, L) memory
    return at::empty({groups, sizes[1], sizes[3], sizes[2]}, like.options()).transpose(2, 3);
  return at::empty(sizes, like.options());
}

// Returns (out, last_state, checkpoints); out is (G, Bt, L, d), or (Bt, L, d) summed over the
// groups when sum_groups, in u's layout. checkpoints is empty unless save. With delta_proj
// (G, d, r), delta is the low-rank input (G|1, Bt, L, r) of the delta projection (see Scan).
std::tuple<at::Tensor, at::Tensor, at::Tensor> scan_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& bias,
    bool softplus, int64_t reverse, bool sum_groups, bool save, int64_t S,
    const std::optional<at::Tensor>& delta_proj) {
  Scan s = make_scan(u, delta, A, B, C, D, z, bias, softplus, reverse, S, delta_proj);
  auto opts = u.options();
  at::Tensor out = empty_like_layout(u, sum_groups ? 1 : s.G);
  s.out = view_of(out);
  at::Tensor last = at::empty({s.G, s.Bt, s.d, s.n}, opts);
  s.last = last.data_ptr<float>();
  at::Tensor ckpt = save ? at::empty({s.G, s.Bt, s.nseg, s.n, s.d}, opts) : at::empty({0}, opts);
  if (save) s.ckpt = ckpt.data_ptr<float>();
  const int64_t nblk = (s.d + W - 1) / W;
  at::parallel_for(0, s.Bt * nblk, 1, [&](int64_t lo, int64_t hi) {
    std::vector<vf> h(s.n), Av(s.n), Pv(s.r);
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t b = task / nblk, c0 = (task % nblk) * W;
      const int cnt = (int)std::min<int64_t>(W, s.d - c0);
      for (int64_t g = 0; g < s.G; ++g) {
        if (cnt == W && s.n == 16 && s.nonpos)
          scan_fwd_block<true, 16, true>(s, g, b, c0, cnt, h.data(), Av.data(), Pv.data());
        else if (cnt == W && s.n == 16)
          scan_fwd_block<true, 16, false>(s, g, b, c0, cnt, h.data(), Av.data(), Pv.data());
        else if (cnt == W)
          scan_fwd_block<true, 0, false>(s, g, b, c0, cnt, h.data(), Av.data(), Pv.data());
        else
          scan_fwd_block<false, 0, false>(s, g, b, c0, cnt, h.data(), Av.data(), Pv.data());
      }
    }
  });
  return {sum_groups ? out.squeeze(0) : out, last, ckpt};
}

// Gradients of scan_fwd. gout is (G, Bt, L, d) or, for a summed output, (1, Bt, L, d).
// gz_out (same layout as z) receives dL/dz (summed over groups when z's group stride is 0).
// Returns (gu, gdelta, gA, gB, gC, gD, gbias): gu, gdelta in u's layout; gA (G, d, n), gD and
// gbias (G, d), summed over batch; gB, gC (G, Bt, L, n).
std::vector<at::Tensor> scan_bwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                                 const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& bias,
                                 bool softplus, int64_t reverse, const at::Tensor& ckpt, int64_t S,
                                 const at::Tensor& gout, const std::optional<at::Tensor>& gz_out,
                                 const std::optional<at::Tensor>& gu_buf, const std::optional<at::Tensor>& gdelta_buf,
                                 const std::optional<at::Tensor>& delta_proj) {
  Scan s = make_scan(u, delta, A, B, C, D, z, bias, softplus, reverse, S, delta_proj);
  TORCH_CHECK(ckpt.is_contiguous() && ckpt.dim() == 5 && ckpt.size(2) == s.nseg, "bad checkpoint tensor ",
              ckpt.sizes());
  s.ckpt = ckpt.data_ptr<float>();
  ScanGrads gr;
  gr.gout = view_of(gout);
  TORCH_CHECK(z.has_value() == gz_out.has_value(), "gz_out must be given exactly when z is");
  gr.gz = view_or_null(gz_out);
  auto opts = u.options();
  at::Tensor gu = gu_buf.has_value() ? *gu_buf : empty_like_layout(u, s.G);
  at::Tensor gdelta = gdelta_buf.has_value() ? *gdelta_buf : empty_like_layout(u, s.G);
  TORCH_CHECK(gu.sizes() == u.sizes() && gdelta.sizes() == u.sizes(), "gradient buffers must have u's shape");
  gr.gu = view_of(gu);
  gr.gdelta = view_of(gdelta);
  const int64_t nblk = (s.d + W - 1) / W;
  // One task per thread at least (the tasks are of equal size); every chunk holds its own
  // channel-sum partials of B and C (2 G Bt L n floats), so no more chunks than that.
  const int64_t threads = at::get_num_threads();
  int64_t chunks = std::min<int64_t>(nblk, std::max<int64_t>(1, (threads + s.Bt - 1) / s.Bt));
  const int64_t per = (nblk + chunks - 1) / chunks;
  chunks = (nblk + per - 1) / per;
  at::Tensor gBp = at::empty({chunks, s.G, s.Bt, s.L, s.n}, opts);
  at::Tensor gCp = at::empty({chunks, s.G, s.Bt, s.L, s.n}, opts);
  at::Tensor gAp = at::empty({s.G, s.Bt, s.d, s.n}, opts);
  at::Tensor gDp = at::empty({s.G, s.Bt, s.d}, opts);
  at::Tensor gbp = at::empty({s.G, s.Bt, s.d}, opts);
  gr.gB = gBp.data_ptr<float>();
  gr.gC = gCp.data_ptr<float>();
  gr.gA = gAp.data_ptr<float>();
  gr.gD = gDp.data_ptr<float>();
  gr.gbias = gbp.data_ptr<float>();
  gr.chunks = chunks;
  at::parallel_for(0, s.Bt * chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t b = task / chunks, chunk = task % chunks;
      scan_bwd_task(s, gr, b, chunk, chunk * per, std::min(nblk, (chunk + 1) * per));
    }
  });
  at::Tensor gB = chunks == 1 ? gBp.squeeze(0) : gBp.sum(0);
  at::Tensor gC = chunks == 1 ? gCp.squeeze(0) : gCp.sum(0);
  return {gu, gdelta, gAp.sum(1), gB, gC, gDp.sum(1), gbp.sum(1)};
}

// ----------------------------------------------------------------------------------------
// Depthwise causal conv over positions (+ SiLU): out[i] = act(bias + sum_k w[k] x[i - K + 1 + k])
// in processing order (reversed positions for a reversed group, i.e. an anti-causal conv).

struct Conv {
  int64_t G, Bt, L, d, K;
  View x;
  const float *w, *bias;  // (G, d, K), (G, d)
  bool silu;
  int64_t reverse;
  int64_t pos(int64_t g, int64_t i) const { return ((reverse >> g) & 1) ? L - 1 - i : i; }
};

Conv make_conv(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias, bool silu,
               int64_t reverse) {
  Conv c;
  c.x = channels_last_view(x);
  c.G = w.size(0);
  c.Bt = x.size(1);
  c.L = x.size(2);
  c.d = x.size(3);
  TORCH_CHECK(x.size(0) == 1 || x.size(0) == c.G, "x must have 1 or G groups");
  TORCH_CHECK(w.dim() == 3 && w.size(1) == c.d, "conv weight must be (G, d, K), got ", w.sizes());
  c.K = w.size(2);
  TORCH_CHECK(c.K >= 1 && c.K <= 64, "conv width must be in 1..64, got ", c.K);
  c.w = ptr_or_null(w);
  c.bias = ptr_or_null(bias);
  c.silu = silu;
  c.reverse = reverse;
  return c;
}

template <bool FULL>
void conv_params(const Conv& c, int64_t g, int64_t c0, int cnt, vf* wv, vf& bv) {
  load_columns(c.w + (g * c.d + c0) * c.K, c.K, cnt, wv);
  bv = c.bias ? load<FULL>(c.bias + g * c.d + c0, cnt) : vf{};
}

// The conv's pre-activations of one group of kPos positions: pre[q] = bv + sum_k wv[k] xw[q + k]
// (xw: the window, as conv_fwd_block describes).
DNADIFF_INLINE void conv_group(int64_t K, const vf* wv, vf bv, const vf* xw, vf* pre) {
  UNROLL for (int q = 0; q < kPos; ++q) {
    pre[q] = bv;
    UNROLL for (int64_t k = 0; k < K; ++k) pre[q] += wv[k] * xw[q + k];
  }
}

// KC > 0: the conv width is the compile-time KC (window and weights stay in registers);
// KC == 0: c.K, in the caller's buffers (wbuf at least c.K vectors, xbuf c.K - 1 + kPos).
// Positions go kPos at a time (the SiLU of each group together, per_position's reason): xw holds
// the group's window, the K - 1 inputs before it and then its own, so position q of the group
// sees xw[q .. q + K - 1].
template <bool FULL, int KC>
void conv_fwd_block(const Conv& c, const View& out, int64_t g, int64_t b, int64_t c0, int cnt, vf* wbuf, vf* xbuf) {
  constexpr bool FIXED = KC > 0;
  const int64_t K = FIXED ? KC : c.K;
  vf wl[FIXED ? KC : 1], xl[FIXED ? KC - 1 + kPos : 1];
  vf* wv = FIXED ? wl : wbuf;
  vf* xw = FIXED ? xl : xbuf;
  vf bv;
  conv_params<FULL>(c, g, c0, cnt, wv, bv);
  UNROLL for (int64_t k = 0; k < K - 1 + kPos; ++k) xw[k] = vf{};
  const Order o{c.L, bool((c.reverse >> g) & 1)};
  for (int64_t i0 = 0; i0 < c.L; i0 += kPos) {
    const int m = (int)std::min<int64_t>(kPos, c.L - i0);
    for (int q = 0; q < m; ++q) xw[K - 1 + q] = load<FULL>(c.x.at(g, b, o.pos(i0 + q)) + c0, cnt);
    vf pre[kPos];
    conv_group(K, wv, bv, xw, pre);
    if (c.silu) vsilu_n<kPos>(pre);
    for (int q = 0; q < m; ++q) store<FULL>(out.at(g, b, o.pos(i0 + q)) + c0, pre[q], cnt);
    UNROLL for (int64_t k = 0; k + 1 < K; ++k) xw[k] = xw[m + k];
  }
}

// `out`, when given, is a (G, Bt, L, d) buffer to write into (a reused workspace).
at::Tensor conv_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias, bool silu,
                    int64_t reverse, const std::optional<at::Tensor>& out_buf) {
  Conv c = make_conv(x, w, bias, silu, reverse);
  at::Tensor out = out_buf.has_value() ? *out_buf : at::empty({c.G, c.Bt, c.L, c.d}, x.options());
  TORCH_CHECK(out.sizes() == at::IntArrayRef({c.G, c.Bt, c.L, c.d}), "conv out buffer has the wrong shape");
  View ov = channels_last_view(out);
  const int64_t nblk = (c.d + W - 1) / W;
  at::parallel_for(0, c.Bt * nblk, 1, [&](int64_t lo, int64_t hi) {
    std::vector<vf> wv(c.K), xw(c.K - 1 + kPos);
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t b = task / nblk, c0 = (task % nblk) * W;
      const int cnt = (int)std::min<int64_t>(W, c.d - c0);
      for (int64_t g = 0; g < c.G; ++g) {
        if (cnt == W && c.K == 4)
          conv_fwd_block<true, 4>(c, ov, g, b, c0, cnt, wv.data(), xw.data());
        else if (cnt == W)
          conv_fwd_block<true, 0>(c, ov, g, b, c0, cnt, wv.data(), xw.data());
        else
          conv_fwd_block<false, 0>(c, ov, g, b, c0, cnt, wv.data(), xw.data());
      }
    }
  });
  return out;
}

template <bool FULL, int KC>
void conv_bwd_block(const Conv& c, const View& gout, const View& gx, float* gw, float* gb, int64_t g, int64_t b,
                    int64_t c0, int cnt, vf* wbuf, vf* xbuf, vf* abuf, vf* gbuf) {
  constexpr bool FIXED = KC > 0;
  const int64_t K = FIXED ? KC : c.K;
  vf wl[FIXED ? KC : 1], xl[FIXED ? KC - 1 + kPos : 1], al[FIXED ? KC : 1], gl[FIXED ? KC : 1];
  vf* wv = FIXED ? wl : wbuf;
  vf* xw = FIXED ? xl : xbuf;  // as conv_fwd_block's
  vf* acc = FIXED ? al : abuf;
  vf* gwv = FIXED ? gl : gbuf;
  vf bv;
  conv_params<FULL>(c, g, c0, cnt, wv, bv);
  const bool add = g > 0 && gx.g == 0;
  UNROLL for (int64_t k = 0; k < K; ++k) acc[k] = gwv[k] = vf{};
  UNROLL for (int64_t k = 0; k < K - 1 + kPos; ++k) xw[k] = vf{};
  vf gbv = vf{};
  const Order o{c.L, bool((c.reverse >> g) & 1)};
  // acc[k] collects dL/dx at processing position i - K + 1 + k; acc[0] is complete after step i.
  for (int64_t i0 = 0; i0 < c.L; i0 += kPos) {
    const int m = (int)std::min<int64_t>(kPos, c.L - i0);
    vf pre[kPos], gp[kPos] = {};
    for (int q = 0; q < m; ++q) {
      const int64_t t = o.pos(i0 + q);
      xw[K - 1 + q] = load<FULL>(c.x.at(g, b, t) + c0, cnt);
      gp[q] = load<FULL>(gout.at(g, b, t) + c0, cnt);
    }
    conv_group(K, wv, bv, xw, pre);
    if (c.silu) {
      vf sg[kPos];
      UNROLL for (int q = 0; q < kPos; ++q) sg[q] = pre[q];
      vsigmoid_n<kPos>(sg);
      UNROLL for (int q = 0; q < kPos; ++q) gp[q] *= sg[q] * (1.0f + pre[q] * (1.0f - sg[q]));
    }
    for (int q = 0; q < m; ++q) {
      gbv += gp[q];
      UNROLL for (int64_t k = 0; k < K; ++k) {
        gwv[k] += gp[q] * xw[q + k];
        acc[k] += gp[q] * wv[k];
      }
      const int64_t done = i0 + q - K + 1;
      if (done >= 0) put<FULL>(gx.at(g, b, o.pos(done)) + c0, acc[0], cnt, add);
      UNROLL for (int64_t k = 0; k + 1 < K; ++k) acc[k] = acc[k + 1];
      acc[K - 1] = vf{};
    }
    UNROLL for (int64_t k = 0; k + 1 < K; ++k) xw[k] = xw[m + k];
  }
  for (int64_t k = 0; k + 1 < K; ++k) {
    const int64_t p = c.L - K + 1 + k;
    if (p >= 0) put<FULL>(gx.at(g, b, o.pos(p)) + c0, acc[k], cnt, add);
  }
  for (int i = 0; i < cnt; ++i) {
    for (int64_t k = 0; k < K; ++k) gw[(c0 + i) * K + k] = gwv[k][i];
    if (gb) gb[c0 + i] = gbv[i];
  }
}

// Gradients of conv_fwd: writes dL/dx into gx (x's layout; summed over groups when its group
// stride is 0) and returns (gw (G, d, K), gbias (G, d)), summed over batch.
std::tuple<at::Tensor, at::Tensor> conv_bwd(const at::Tensor& x, const at::Tensor& w,
                                            const std::optional<at::Tensor>& bias, bool silu, int64_t reverse,
                                            const at::Tensor& gout, const at::Tensor& gx) {
  Conv c = make_conv(x, w, bias, silu, reverse);
  View go = channels_last_view(gout), gxv = channels_last_view(gx);
  TORCH_CHECK(gx.size(0) == x.size(0), "gx must have x's group count");
  auto opts = x.options();
  at::Tensor gwp = at::empty({c.Bt, c.G, c.d, c.K}, opts);
  at::Tensor gbp = at::zeros({c.Bt, c.G, c.d}, opts);
  const int64_t nblk = (c.d + W - 1) / W;
  at::parallel_for(0, c.Bt * nblk, 1, [&](int64_t lo, int64_t hi) {
    std::vector<vf> wv(c.K), xw(c.K - 1 + kPos), acc(c.K), gwv(c.K);
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t b = task / nblk, c0 = (task % nblk) * W;
      const int cnt = (int)std::min<int64_t>(W, c.d - c0);
      for (int64_t g = 0; g < c.G; ++g) {
        float* gw = gwp.data_ptr<float>() + (b * c.G + g) * c.d * c.K;
        float* gb = c.bias ? gbp.data_ptr<float>() + (b * c.G + g) * c.d : nullptr;
        if (cnt == W && c.K == 4)
          conv_bwd_block<true, 4>(c, go, gxv, gw, gb, g, b, c0, cnt, wv.data(), xw.data(), acc.data(), gwv.data());
        else if (cnt == W)
          conv_bwd_block<true, 0>(c, go, gxv, gw, gb, g, b, c0, cnt, wv.data(), xw.data(), acc.data(), gwv.data());
        else
          conv_bwd_block<false, 0>(c, go, gxv, gw, gb, g, b, c0, cnt, wv.data(), xw.data(), acc.data(), gwv.data());
      }
    }
  });
  return {gwp.sum(0), gbp.sum(0)};
}

int64_t vector_width() { return W; }

}  // namespace

// ----------------------------------------------------------------------------------------
// RMS norm over the last axis, forward only (inference; training keeps torch's, which autograd
// differentiates): out = (x * (1 / sqrt(sum(x^2) / d + eps))) * w, torch's order of operations,
// in one pass per row instead of torch's five elementwise and reduction passes.
constexpr int64_t kNormRowsPerTask = 256;

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat, "rms_norm needs float32 tensors");
  TORCH_CHECK(x.dim() >= 1, "rms_norm needs at least one dimension");
  const int64_t d = x.size(-1);
  TORCH_CHECK(w.dim() == 1 && w.size(0) == d, "rms_norm weight must be (", d, "), got ", w.sizes());
  const at::Tensor xc = x.contiguous(), wc = w.contiguous();
  at::Tensor out = at::empty_like(xc);
  const int64_t rows = d ? xc.numel() / d : 0, full = d / W * W;
  const float* xp = xc.data_ptr<float>();
  const float* wp = wc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float feps = (float)eps;
  at::parallel_for(0, rows, kNormRowsPerTask, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float* xr = xp + i * d;
      float* orow = op + i * d;
      vf acc = vf{};
      for (int64_t c = 0; c < full; c += W) {
        const vf v = load<true>(xr + c, W);
        acc += v * v;
      }
      float ss = hsum(acc);
      for (int64_t c = full; c < d; ++c) ss += xr[c] * xr[c];
      const float r = 1.0f / std::sqrt(ss / (float)d + feps);
      for (int64_t c = 0; c < full; c += W) store<true>(orow + c, (load<true>(xr + c, W) * r) * load<true>(wp + c, W), W);
      for (int64_t c = full; c < d; ++c) orow[c] = (xr[c] * r) * wp[c];
    }
  });
  return out;
}

TORCH_LIBRARY(dnadiff_cpu, m) {
  m.def(
      "scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? bias, "
      "bool softplus, int reverse, bool sum_groups, bool save, int segment, Tensor? delta_proj=None) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "scan_bwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? bias, "
      "bool softplus, int reverse, Tensor ckpt, int segment, Tensor gout, Tensor(a!)? gz_out, "
      "Tensor(b!)? gu_buf=None, Tensor(c!)? gdelta_buf=None, Tensor? delta_proj=None) -> Tensor[]");
  m.def("conv_fwd(Tensor x, Tensor w, Tensor? bias, bool silu, int reverse, Tensor(a!)? out=None) -> Tensor");
  m.def(
      "conv_bwd(Tensor x, Tensor w, Tensor? bias, bool silu, int reverse, Tensor gout, Tensor(a!) gx) "
      "-> (Tensor, Tensor)");
  m.def("rms_norm(Tensor x, Tensor w, float eps) -> Tensor");
  m.def("vector_width() -> int", &vector_width);
}

TORCH_LIBRARY_IMPL(dnadiff_cpu, CPU, m) {
  m.impl("scan_fwd", &scan_fwd);
  m.impl("scan_bwd", &scan_bwd);
  m.impl("conv_fwd", &conv_fwd);
  m.impl("conv_bwd", &conv_bwd);
  m.impl("rms_norm", &rms_norm);
}
