// Shared by the binding's files (addon.cc, attention-driver.cc): process state (ISA level, pool,
// scratch), argument access with bounds checks, error translation.
#pragma once
#define NAPI_VERSION 8
#include <node_api.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>
#include "cpu.h"
#include "kernels.h"
#include "pool.h"

namespace kv {


struct Level {
  const char* name;
  void (*matmulF)(const MatmulF&, int64_t, int64_t);
  int (*attnRowsMax)();
  void (*attendUnit)(const Attention&, int, int, int, int, int, const AttnPartial&);
  double (*peakFma)(int64_t);
  float (*weightOffset)(int32_t);
  void (*quantizeX)(const float*, int64_t, const QuantX&, int64_t, int64_t, float);
  void (*matmulQ)(const MatmulQ&, int64_t, int64_t);
  double (*peakDot)(int64_t);
  void (*swiglu)(const float*, const float*, float*, int64_t, int64_t);
  void (*argmax)(const float*, int64_t, int32_t*, int64_t, int64_t);
  void (*rmsnorm)(const float*, const float*, float*, int64_t, float, int64_t, int64_t);
  void (*rope)(const float*, float*, const float*, int64_t, int64_t, int64_t, int64_t);
  void (*add)(const float*, const float*, float*, int64_t, int64_t);
};

inline const Level LEVELS[] = {
    {"avx512vnni", avx512::matmulF, avx512::attnRowsMax, avx512::attendUnit, avx512::peakFma, vnni::weightOffset,
     vnni::quantizeX, vnni::matmulQ, vnni::peakDot, avx512::swiglu, avx512::argmax, avx512::rmsnorm, avx512::rope,
     avx512::add},
    {"avx512", avx512::matmulF, avx512::attnRowsMax, avx512::attendUnit, avx512::peakFma, avx2::weightOffset,
     avx2::quantizeX, avx2::matmulQ, avx2::peakDot, avx512::swiglu, avx512::argmax, avx512::rmsnorm, avx512::rope,
     avx512::add},
    {"avx2", avx2::matmulF, avx2::attnRowsMax, avx2::attendUnit, avx2::peakFma, avx2::weightOffset, avx2::quantizeX,
     avx2::matmulQ, avx2::peakDot, avx2::swiglu, avx2::argmax, avx2::rmsnorm, avx2::rope, avx2::add},
};

struct State {
  std::vector<std::string> supported = supportedLevels();
  const Level* level = nullptr;
  Pool pool;
  std::mutex op;  // one kernel call at a time: the scratch below is shared
  std::vector<uint8_t> quant;
  std::vector<float> partials;
};
inline State& state() {
  static State* s = new State();  // never destroyed: worker threads must not outlive it at exit
  return *s;
}

inline const Level* findLevel(const std::string& name) {
  for (const auto& l : LEVELS)
    if (name == l.name) return &l;
  return nullptr;
}

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --- argument access --------------------------------------------------------------------------------
/** Whether v is an integer in [lo, 9·10^15] (exact in a double): every count, offset and index argument. */
inline bool integerIn(double v, int64_t lo) {
  return std::isfinite(v) && v == std::floor(v) && v >= static_cast<double>(lo) && v <= 9.0e15;
}

/** v, checked finite (else an Error naming `what`). */
inline double finiteArg(double v, const char* what) {
  if (!std::isfinite(v)) throw Error(std::string(what) + " must be a finite number");
  return v;
}

/** v, checked finite and then an integer in [lo, 9·10^15] (else an Error naming `what`). */
inline int64_t integerArg(double v, const char* what, int64_t lo = 0) {
  if (!integerIn(finiteArg(v, what), lo))
    throw Error(std::string(what) + " must be an integer ≥ " + std::to_string(lo));
  return static_cast<int64_t>(v);
}

struct Call {
  napi_env env;
  size_t argc = 40;
  napi_value argv[40];
  Call(napi_env e, napi_callback_info info, size_t need, const char* fn) : env(e) {
    napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
    if (argc < need) throw Error(std::string(fn) + ": expected " + std::to_string(need) + " arguments");
  }
  double num(size_t i, const char* what) const {
    double v;
    if (napi_get_value_double(env, argv[i], &v) != napi_ok) v = std::nan("");
    return finiteArg(v, what);
  }
  int64_t int64(size_t i, const char* what, int64_t lo = 0) const { return integerArg(num(i, what), what, lo); }
  std::string str(size_t i) const {
    char buf[64];
    size_t n = 0;
    if (napi_get_value_string_utf8(env, argv[i], buf, sizeof buf, &n) != napi_ok) return "";
    return std::string(buf, n);
  }
};

struct Mem {
  uint8_t* data;
  int64_t bytes;
  /** pointer at byte offset `off` with `len` bytes in range */
  template <typename T>
  T* at(int64_t off, int64_t len, const char* what) const {
    if (off < 0 || len < 0 || off > bytes || len > bytes - off)
      throw Error(std::string(what) + ": bytes [" + std::to_string(off) + ", " + std::to_string(off + len) +
                  ") outside the memory (" + std::to_string(bytes) + " bytes)");
    return reinterpret_cast<T*>(data + off);
  }
};

inline Mem memArg(const Call& c, size_t i) {
  bool is = false;
  void* data = nullptr;
  if (napi_is_typedarray(c.env, c.argv[i], &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t length, offset;
    napi_value ab;
    napi_get_typedarray_info(c.env, c.argv[i], &type, &length, &data, &ab, &offset);
    static const int SIZE[] = {1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8, 2};
    return {static_cast<uint8_t*>(data), static_cast<int64_t>(length) * SIZE[type]};
  }
  if (napi_is_arraybuffer(c.env, c.argv[i], &is) == napi_ok && is) {
    size_t length;
    napi_get_arraybuffer_info(c.env, c.argv[i], &data, &length);
    return {static_cast<uint8_t*>(data), static_cast<int64_t>(length)};
  }
  throw Error("memory must be a typed array or ArrayBuffer (wrap a SharedArrayBuffer in a Uint8Array)");
}

inline napi_value undefinedValue(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

template <typename F>
napi_value guard(napi_env env, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    napi_throw_error(env, "KVRAG_NATIVE", e.what());
    return nullptr;
  }
}

/** work-proportional part count: 1 (inline) for small ops, else a few per pool thread */
inline int partsFor(int64_t work, int64_t units) {
  State& s = state();
  if (s.pool.threads() == 1 || work < (1 << 17)) return 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(units, s.pool.threads() * 4)));
}

napi_value attentionFn(napi_env env, napi_callback_info info);
napi_value attentionSpansFn(napi_env env, napi_callback_info info);
napi_value kvUnpackFn(napi_env env, napi_callback_info info);
napi_value rmsnormFn(napi_env env, napi_callback_info info);
napi_value ropeFn(napi_env env, napi_callback_info info);
napi_value addFn(napi_env env, napi_callback_info info);

}  // namespace kv
