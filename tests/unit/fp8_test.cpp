// The FP8 E4M3 codec against all 256 codes, with the expected values
// enumerated by hand from the format's definition: positive subnormals are
// k * 2^-9 (k = 0..7), positive normals (8 + m) * 2^(E - 10) for exponent
// fields E = 1..15 and mantissas m = 0..7, except E = 15, m = 7 (NaN).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "jobs/numeric/fp8.hpp"

namespace qjobs::numeric {
namespace {

// Values of codes 0x00..0x7F in order (NaN last), written out by enumeration.
std::vector<float> positive_values() {
  std::vector<float> v;
  for (int k = 0; k < 8; ++k) v.push_back(static_cast<float>(k) / 512.0f);
  for (int E = 1; E <= 15; ++E)
    for (int m = 0; m < 8; ++m) {
      float scale = 1.0f;
      for (int i = 0; i < std::abs(E - 10); ++i) scale = E > 10 ? scale * 2.0f : scale / 2.0f;
      v.push_back(E == 15 && m == 7 ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(8 + m) * scale);
    }
  return v;
}

int encode_one(float x) { return fp8_e4m3_encode(at::tensor({x})).item<uint8_t>(); }

TEST(Fp8E4m3, DecodesAll256Codes) {
  const auto pos = positive_values();
  ASSERT_EQ(pos.size(), 128u);
  EXPECT_EQ(pos[0x7E], 448.0f);
  EXPECT_EQ(pos[0x08], 1.0f / 64.0f);  // smallest normal, 2^-6
  EXPECT_EQ(pos[0x38], 1.0f);          // field 7, mantissa 0
  const auto codes = at::arange(256, at::kLong).to(at::kByte);
  const auto got = fp8_e4m3_decode(codes);
  for (int c = 0; c < 256; ++c) {
    const float want = c < 128 ? pos[c] : -pos[c - 128];
    const float g = got[c].item<float>();
    if (std::isnan(want)) EXPECT_TRUE(std::isnan(g)) << "code " << c;
    else EXPECT_EQ(g, want) << "code " << c;
  }
  EXPECT_TRUE(std::signbit(got[0x80].item<float>())) << "0x80 is -0";
}

TEST(Fp8E4m3, EncodesEveryValueToItsCode) {
  const auto pos = positive_values();
  for (int c = 0; c < 256; ++c) {
    const float v = c < 128 ? pos[c] : -pos[c - 128];
    if (std::isnan(v)) continue;
    EXPECT_EQ(encode_one(v), c) << "value " << v;
    EXPECT_EQ(fp8_e4m3_round(at::tensor({v})).item<float>(), v);
  }
}

TEST(Fp8E4m3, MidpointsRoundToTheEvenCodeAndNeighboursToTheNearest) {
  const auto pos = positive_values();
  for (int c = 0; c + 1 <= 0x7E; ++c) {
    const float lo = pos[c], hi = pos[c + 1];
    const float mid = (lo + hi) / 2;  // exact: at most five significant bits
    const int even = c % 2 == 0 ? c : c + 1;
    EXPECT_EQ(encode_one(mid), even) << "midpoint of " << lo << " and " << hi;
    EXPECT_EQ(encode_one(-mid), even + 128) << "midpoint of " << -lo << " and " << -hi;
    EXPECT_EQ(encode_one(std::nextafter(mid, 0.0f)), c) << "just below " << mid;
    EXPECT_EQ(encode_one(std::nextafter(mid, 1000.0f)), c + 1) << "just above " << mid;
  }
}

TEST(Fp8E4m3, SaturatesAndKeepsNaN) {
  for (float x : {448.0f, 449.0f, 464.0f, 480.0f, 1e6f, std::numeric_limits<float>::infinity()}) {
    EXPECT_EQ(encode_one(x), 0x7E) << x;
    EXPECT_EQ(encode_one(-x), 0xFE) << -x;
  }
  EXPECT_EQ(encode_one(-0.0f), 0x80);
  EXPECT_EQ(encode_one(1e-9f), 0x00) << "below half the smallest subnormal rounds to zero";
  EXPECT_EQ(encode_one(std::ldexp(1.0f, -10)), 0x00) << "half the smallest subnormal ties to even (zero)";
  EXPECT_EQ(encode_one(std::ldexp(1.5f, -10)), 0x01);
  const auto nan = fp8_e4m3_encode(at::tensor({std::numeric_limits<float>::quiet_NaN()}));
  EXPECT_TRUE(std::isnan(fp8_e4m3_decode(nan).item<float>()));
}

}  // namespace
}  // namespace qjobs::numeric
