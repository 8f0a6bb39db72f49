// The constructor-time argument checks of the spiking layers, SBP and the spiking models,
// as torch_plugin/nn/common.py's check_* in Python: c10::Error
// "naca::<who>: argument '<name>' expected <what>, got <value>", raised before anything
// is built.
#pragma once

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>

namespace naca::api {

/// v as a finite number in [low, high] (an open end with low_open / high_open; a missing
/// bound: no bound on that side).
inline double check_real(const char* who, const char* name, double v,
                         std::optional<double> low = std::nullopt,
                         std::optional<double> high = std::nullopt, bool low_open = false,
                         bool high_open = false) {
  const bool ok = std::isfinite(v) && (!low || (low_open ? v > *low : v >= *low)) &&
                  (!high || (high_open ? v < *high : v <= *high));
  if (ok) return v;
  std::ostringstream what;
  if (low && high) {
    what << "a finite number in " << (low_open ? "(" : "[") << *low << ", " << *high
         << (high_open ? ")" : "]");
  } else if (low) {
    what << "a finite number " << (low_open ? "> " : ">= ") << *low;
  } else if (high) {
    what << "a finite number " << (high_open ? "< " : "<= ") << *high;
  } else {
    what << "a finite number";
  }
  TORCH_CHECK(false, "naca::", who, ": argument '", name, "' expected ", what.str(), ", got ", v);
}

/// v as an integer >= low (when given).
inline int64_t check_int(const char* who, const char* name, int64_t v,
                         std::optional<int64_t> low = std::nullopt) {
  TORCH_CHECK(!low || v >= *low, "naca::", who, ": argument '", name, "' expected an integer >= ",
              low.value_or(0), ", got ", v);
  return v;
}

/// v, one of `choices`.
inline const std::string& check_choice(const char* who, const char* name, const std::string& v,
                                       std::initializer_list<const char*> choices) {
  std::string listed = "(";
  for (const char* c : choices) {
    if (v == c) return v;
    listed += std::string(listed.size() > 1 ? ", '" : "'") + c + "'";
  }
  listed += ")";
  TORCH_CHECK(false, "naca::", who, ": argument '", name, "' expected one of ", listed, ", got '",
              v, "'");
}

}  // namespace naca::api
