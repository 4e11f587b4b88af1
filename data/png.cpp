// PNG through stb_image / stb_image_write (see png.h). Both implementations
// live in this file and nowhere else in data/; they are compiled static
// (STB_IMAGE_STATIC, STB_IMAGE_WRITE_STATIC), so apps that carry their own
// stb_image_write (apps/app_common.cpp) link without duplicate symbols.
#include "data/png.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "data/io.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#include <stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#pragma GCC diagnostic pop

namespace dimix::data {

GrayImage decode_png_gray(const uint8_t* bytes, size_t size, const std::string& source) {
  DIMIX_CHECK(size > 0, "png: ", source, " is empty (0 bytes)");
  DIMIX_CHECK(size < (size_t(1) << 31), "png: ", source, " is too large (", size, " bytes)");
  int w = 0, h = 0, comp = 0;
  stbi_uc* px = stbi_load_from_memory(bytes, static_cast<int>(size), &w, &h, &comp, 1);
  if (!px) {
    const char* why = stbi_failure_reason();
    DIMIX_FAIL("png: cannot decode ", source, " (", size, " bytes): ", why ? why : "unknown reason");
  }
  std::unique_ptr<stbi_uc, void (*)(void*)> owner(px, stbi_image_free);
  GrayImage img;
  img.width = w;
  img.height = h;
  img.channels_in_file = comp;
  img.pixels.assign(px, px + static_cast<size_t>(w) * static_cast<size_t>(h));
  return img;
}

GrayImage read_png_gray(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_png_gray(bytes.data(), bytes.size(), "file '" + path + "'");
}

std::vector<uint8_t> encode_png_gray(int width, int height, const uint8_t* pixels) {
  DIMIX_CHECK(width > 0 && height > 0, "png: cannot encode a ", width, "x", height, " image");
  std::vector<uint8_t> out;
  auto sink = [](void* context, void* data, int size) {
    auto* v = static_cast<std::vector<uint8_t>*>(context);
    const auto* p = static_cast<const uint8_t*>(data);
    v->insert(v->end(), p, p + size);
  };
  const int ok = stbi_write_png_to_func(sink, &out, width, height, 1, pixels, width);
  DIMIX_CHECK(ok != 0, "png: stb_image_write failed to encode a ", width, "x", height, " image");
  return out;
}

void write_file_bytes(const std::string& path, const void* bytes, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) DIMIX_FAIL("cannot write file '", path, "': ", std::strerror(errno));
  const size_t done = size ? std::fwrite(bytes, 1, size, f) : 0;
  const int close_rc = std::fclose(f);
  DIMIX_CHECK(done == size && close_rc == 0, "cannot write file '", path, "': wrote ", done, " of ", size, " bytes");
}

void write_png_gray(const std::string& path, int width, int height, const uint8_t* pixels) {
  const std::vector<uint8_t> png = encode_png_gray(width, height, pixels);
  write_file_bytes(path, png.data(), png.size());
}

}  // namespace dimix::data
