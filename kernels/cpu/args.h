// Argument checking for the Node-API bindings. Every kernel takes preallocated typed arrays plus
// sizes; a wrong type becomes a JS TypeError and a wrong length or index a RangeError, both naming
// the function and the argument, before any kernel touches memory. (Built with
// NAPI_CPP_EXCEPTIONS: a thrown Napi::Error becomes the JS exception.)
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>

namespace kiln {

// cat("a", 1, "b") == "a1b": error messages from mixed parts.
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  return s.str();
}

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn, size_t count) : info_(info), fn_(fn) {
    if (info.Length() != count) {
      typeError(cat("expected ", count, " arguments, got ", info.Length()));
    }
  }

  [[noreturn]] void typeError(const std::string& msg) const {
    throw Napi::TypeError::New(info_.Env(), cat(fn_, ": ", msg));
  }
  [[noreturn]] void error(const std::string& msg) const {
    throw Napi::Error::New(info_.Env(), cat(fn_, ": ", msg));
  }
  [[noreturn]] void rangeError(const std::string& msg) const {
    throw Napi::RangeError::New(info_.Env(), cat(fn_, ": ", msg));
  }

  template <typename T>
  Napi::TypedArrayOf<T> array(size_t i, const char* name) const {
    const Napi::Value v = info_[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kindOf<T>()) {
      typeError(cat("argument '", name, "' must be a ", kindName<T>()));
    }
    return v.As<Napi::TypedArrayOf<T>>();
  }

  // A Float32Array or null (an optional bias).
  const float* f32OrNull(size_t i, const char* name, size_t expectedLength) const {
    if (info_[i].IsNull() || info_[i].IsUndefined()) return nullptr;
    const Napi::Float32Array a = array<float>(i, name);
    length(name, a.ElementLength(), expectedLength);
    return a.Data();
  }

  // A non-negative integer size or count.
  size_t count(size_t i, const char* name) const {
    const Napi::Value v = info_[i];
    if (!v.IsNumber()) typeError(cat("argument '", name, "' must be a number"));
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 4294967295.0 || d != static_cast<double>(static_cast<uint64_t>(d))) {
      rangeError(cat("argument '", name, "' must be a non-negative integer below 2^32, got ", d));
    }
    return static_cast<size_t>(d);
  }

  size_t positive(size_t i, const char* name) const {
    const size_t n = count(i, name);
    if (n == 0) rangeError(cat("argument '", name, "' must be positive"));
    return n;
  }

  double finite(size_t i, const char* name) const {
    const Napi::Value v = info_[i];
    if (!v.IsNumber()) typeError(cat("argument '", name, "' must be a number"));
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d)) rangeError(cat("argument '", name, "' must be finite"));
    return d;
  }

  bool boolean(size_t i, const char* name) const {
    const Napi::Value v = info_[i];
    if (!v.IsBoolean()) typeError(cat("argument '", name, "' must be a boolean"));
    return v.As<Napi::Boolean>().Value();
  }

  void length(const char* name, size_t actual, size_t expected) const {
    if (actual != expected) {
      rangeError(cat(name, " has length ", actual, ", expected ", expected));
    }
  }

  // a * b, refusing sizes past 2^53 (no typed array is that long, so a product there is a bad shape).
  size_t mul(size_t a, size_t b) const {
    if (a != 0 && b > (size_t{1} << 53) / a) rangeError("shape product overflows");
    return a * b;
  }

  // Outputs written in place must not share memory with an input (the kernels read inputs while
  // writing outputs in tiles).
  template <typename A, typename B>
  void disjoint(const char* an, const A* a, size_t aLen, const char* bn, const B* b, size_t bLen) const {
    const auto a0 = reinterpret_cast<uintptr_t>(a), a1 = a0 + aLen * sizeof(A);
    const auto b0 = reinterpret_cast<uintptr_t>(b), b1 = b0 + bLen * sizeof(B);
    if (aLen != 0 && bLen != 0 && a0 < b1 && b0 < a1) {
      rangeError(cat(an, " and ", bn, " must not share memory"));
    }
  }

 private:
  template <typename T>
  static napi_typedarray_type kindOf() {
    if constexpr (std::is_same_v<T, float>) return napi_float32_array;
    else if constexpr (std::is_same_v<T, uint16_t>) return napi_uint16_array;
    else {
      static_assert(std::is_same_v<T, int32_t>, "kernels take Float32Array, Uint16Array or Int32Array");
      return napi_int32_array;
    }
  }
  template <typename T>
  static const char* kindName() {
    if constexpr (std::is_same_v<T, float>) return "Float32Array";
    else if constexpr (std::is_same_v<T, uint16_t>) return "Uint16Array";
    else return "Int32Array";
  }

  const Napi::CallbackInfo& info_;
  const char* fn_;
};

}  // namespace kiln
