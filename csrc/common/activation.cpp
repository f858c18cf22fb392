// Name parsing and argument checks derived from the activation table (common/activation.h).
#include "common/activation.h"

#include "common/checks.h"

#include <c10/util/Exception.h>

namespace pygan {
namespace {

// The quoted names of the rows with a learned slope, joined by " or ": "'prelu'".
std::string learned_slope_names() {
  std::string out;
  for (const ActivationSpec& s : kActivations) {
    if (s.slope != Slope::Learned) continue;
    if (!out.empty()) out += " or ";
    out += "'" + std::string(s.name) + "'";
  }
  return out;
}

}  // namespace

std::string quoted_activation_names() {
  std::string out;
  for (const ActivationSpec& s : kActivations) {
    if (!out.empty()) out += ", ";
    out += "'" + std::string(s.name) + "'";
  }
  return out;
}

const ActivationSpec& activation_spec(std::string_view name, std::string_view op) {
  for (const ActivationSpec& s : kActivations)
    if (s.name == name) return s;
  TORCH_CHECK(false, op, ": activation must be one of ", quoted_activation_names(), ", got '", name, "'");
}

const char* slope_name(Slope s) {
  switch (s) {
    case Slope::None: return "none";
    case Slope::Fixed: return "fixed";
    case Slope::Learned: return "learned";
  }
  return "?";
}

const char* when_name(When w) {
  switch (w) {
    case When::Always: return "always";
    case When::Never: return "never";
    case When::PositiveSlope: return "positive_slope";
  }
  return "?";
}

void check_slope_arg(const ActivationSpec& spec, const std::optional<at::Tensor>& slope, const at::Tensor& input,
                     std::string_view op) {
  const bool given = slope.has_value() && slope->defined();
  if (spec.slope == Slope::Learned) {
    TORCH_CHECK(given, op, ": activation='", spec.name, "' needs slope (1 or C elements)");
    check_per_channel(slope, input, input.size(1), op, "slope", /*allow_one=*/true);
  } else {
    TORCH_CHECK(!given, op, ": slope is only used with activation=", learned_slope_names(), ", got activation='",
                spec.name, "'");
  }
}

}  // namespace pygan
