// The Catch2 main for every test binary. Tests run with a fixed global seed
// so failures reproduce.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "core/rng.h"

int main(int argc, char* argv[]) {
  dimix::manual_seed(20240601);
  return Catch::Session().run(argc, argv);
}
