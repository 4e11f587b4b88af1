// Shared pieces of the binaries (see app_common.h).
#include "apps/app_common.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "core/error.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#include <cmath>

namespace dimix::app {

Flags::Flags(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

void Flags::add(const std::string& name, const std::string& def, const std::string& help) {
  order_.push_back(name);
  specs_[name] = {def, help, false};
}
void Flags::add_bool(const std::string& name, const std::string& help) {
  order_.push_back(name);
  specs_[name] = {"false", help, true};
}

bool Flags::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << help();
      return false;
    }
    DIMIX_CHECK(a.rfind("--", 0) == 0, program_, ": unexpected argument '", a, "' (flags look like --name value; see --help)");
    std::string name = a.substr(2), value;
    const auto eq = name.find('=');
    const bool has_eq = eq != std::string::npos;
    if (has_eq) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto it = specs_.find(name);
    DIMIX_CHECK(it != specs_.end(), program_, ": unknown flag --", name, " (see --help)");
    if (it->second.is_bool) {
      if (!has_eq) value = "true";
      DIMIX_CHECK(value == "true" || value == "false", program_, ": --", name, " expects true or false, got '", value, "'");
    } else if (!has_eq) {
      DIMIX_CHECK(i + 1 < argc, program_, ": --", name, " expects a value");
      value = argv[++i];
    }
    values_[name] = value;
    // Numeric flags (numeric defaults) are checked here, so a bad value is
    // reported even when the program would not have read it.
    const std::string& def = it->second.default_value;
    if (!it->second.is_bool && !def.empty() && def.find_first_not_of("0123456789.-e") == std::string::npos) real(name);
  }
  return true;
}

std::string Flags::str(const std::string& name) const {
  auto v = values_.find(name);
  if (v != values_.end()) return v->second;
  auto s = specs_.find(name);
  DIMIX_CHECK(s != specs_.end(), program_, ": internal: flag --", name, " was never declared");
  return s->second.default_value;
}

int64_t Flags::integer(const std::string& name) const {
  const std::string s = str(name);
  size_t pos = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &pos);
  } catch (...) {
    pos = 0;
  }
  DIMIX_CHECK(pos == s.size() && !s.empty(), program_, ": --", name, " expects an integer, got '", s, "'");
  return v;
}

double Flags::real(const std::string& name) const {
  const std::string s = str(name);
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (...) {
    pos = 0;
  }
  DIMIX_CHECK(pos == s.size() && !s.empty(), program_, ": --", name, " expects a number, got '", s, "'");
  return v;
}

bool Flags::flag(const std::string& name) const { return str(name) == "true"; }
bool Flags::given(const std::string& name) const { return values_.count(name) > 0; }

std::string Flags::help() const {
  std::ostringstream os;
  os << "usage: " << program_ << " [flags]\n" << summary_ << "\n\nflags:\n";
  for (const auto& n : order_) {
    const Spec& s = specs_.at(n);
    os << "  --" << n;
    if (!s.is_bool) os << " <value>";
    os << "\n      " << s.help;
    if (!s.is_bool) os << " (default: " << (s.default_value.empty() ? "\"\"" : s.default_value) << ")";
    os << "\n";
  }
  return os.str();
}

int run_main(const std::function<int()>& body) {
  try {
    return body();
  } catch (const dimix::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

bool stdout_is_terminal() { return isatty(fileno(stdout)) != 0; }

void write_png_rgb(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb) {
  DIMIX_CHECK(static_cast<int64_t>(rgb.size()) == int64_t(width) * height * 3, "write_png: ", rgb.size(),
              " bytes for a ", width, "x", height, " RGB image");
  DIMIX_CHECK(stbi_write_png(path.c_str(), width, height, 3, rgb.data(), width * 3) != 0, "write_png: cannot write '",
              path, "'");
}

void palette(int64_t i, uint8_t rgb[3]) {
  const double h = std::fmod(i * 137.508, 360.0) / 60.0, s = 0.65, v = 0.95;
  const double c = v * s, x = c * (1 - std::fabs(std::fmod(h, 2.0) - 1)), m = v - c;
  double r = 0, g = 0, b = 0;
  switch (static_cast<int>(h)) {
    case 0: r = c; g = x; break;
    case 1: r = x; g = c; break;
    case 2: g = c; b = x; break;
    case 3: g = x; b = c; break;
    case 4: r = x; b = c; break;
    default: r = c; b = x; break;
  }
  rgb[0] = static_cast<uint8_t>((r + m) * 255);
  rgb[1] = static_cast<uint8_t>((g + m) * 255);
  rgb[2] = static_cast<uint8_t>((b + m) * 255);
}

}  // namespace dimix::app
