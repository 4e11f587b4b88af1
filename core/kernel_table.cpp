// The device kernel table (see kernel_table.h).
#include "core/kernel_table.h"

#include <cstring>
#include <map>
#include <mutex>

namespace dimix {
namespace {
struct Entry {
  void* fn;
  const char* signature;
};
std::map<std::string, Entry>& table() {
  static std::map<std::string, Entry> t;
  return t;
}
std::mutex& table_mutex() {
  static std::mutex m;
  return m;
}
bool& built_flag() {
  static bool b = false;
  return b;
}
}  // namespace

void register_kernel(const std::string& name, void* fn, const char* signature) {
  std::lock_guard<std::mutex> lock(table_mutex());
  table()[name] = Entry{fn, signature};
  built_flag() = true;
}

void* find_kernel_raw(const std::string& name, const char* signature) {
  std::lock_guard<std::mutex> lock(table_mutex());
  auto it = table().find(name);
  if (it == table().end()) {
    DIMIX_CHECK(built_flag(), name, ": this tensor is on a GPU but dimix was built without CUDA");
    DIMIX_FAIL(name, ": no CUDA kernel is registered under this name");
  }
  DIMIX_CHECK(std::strcmp(it->second.signature, signature) == 0, name,
              ": CUDA kernel registered with a different signature");
  return it->second.fn;
}

bool has_kernel(const std::string& name) {
  std::lock_guard<std::mutex> lock(table_mutex());
  return table().count(name) != 0;
}

std::vector<std::string> registered_kernels() {
  std::lock_guard<std::mutex> lock(table_mutex());
  std::vector<std::string> names;
  for (const auto& [name, entry] : table()) names.push_back(name);
  return names;
}

bool cuda_built() {
  std::lock_guard<std::mutex> lock(table_mutex());
  return built_flag();
}

}  // namespace dimix
