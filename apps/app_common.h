// Shared pieces of the binaries: flag parsing with --help, the one-line
// error exit, and terminal detection.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>
#include <cstdint>

namespace dimix::app {

// A tiny flag parser: --name value or --name=value; booleans as --flag.
// Unknown flags and bad values are dimix::Errors naming the flag.
class Flags {
 public:
  explicit Flags(std::string program, std::string summary);
  void add(const std::string& name, const std::string& default_value, const std::string& help);
  void add_bool(const std::string& name, const std::string& help);
  // Returns false when --help was given (help printed).
  bool parse(int argc, char** argv);
  std::string str(const std::string& name) const;
  int64_t integer(const std::string& name) const;
  double real(const std::string& name) const;
  bool flag(const std::string& name) const;
  bool given(const std::string& name) const;
  std::string help() const;

 private:
  struct Spec {
    std::string default_value, help;
    bool is_bool = false;
  };
  std::string program_, summary_;
  std::vector<std::string> order_;
  std::map<std::string, Spec> specs_;
  std::map<std::string, std::string> values_;
};

// Runs body, turning a dimix::Error (or std::exception) into one line on
// stderr and exit code 1.
int run_main(const std::function<int()>& body);

bool stdout_is_terminal();

// Writes an 8-bit RGB image (row-major, 3 bytes a pixel) as PNG; Error naming
// the path when it cannot be written.
void write_png_rgb(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);

// A distinct colour for index i (golden-angle hues), for drawing groups.
void palette(int64_t i, uint8_t rgb[3]);

}  // namespace dimix::app
