// The safetensors reader and writer against bytes laid out by hand.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "jobs/model/safetensors.hpp"

namespace qjobs::model {
namespace {
namespace fs = std::filesystem;

fs::path temp(const std::string& name) {
  return fs::temp_directory_path() / ("qjobs_st_" + std::to_string(::getpid()) + "_" + name);
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string with_header(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

TEST(Safetensors, ReadsAFileWrittenByHand) {
  // Two tensors: F32 [2] = {1.5, -2} and I8 [3] = {-1, 0, 7}.
  float f[2] = {1.5f, -2.0f};
  std::string data(reinterpret_cast<char*>(f), 8);
  data += std::string("\xff\x00\x07", 3);
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I8","shape":[3],"data_offsets":[8,11]},"__metadata__":{"format":"pt"}})";
  const auto p = temp("hand.safetensors");
  write_bytes(p, with_header(header, data));
  const auto file = SafetensorsFile::open(p);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  const auto a = file.tensor("a");
  EXPECT_EQ(a.scalar_type(), at::kFloat);
  EXPECT_EQ(a[0].item<float>(), 1.5f);
  EXPECT_EQ(a[1].item<float>(), -2.0f);
  const auto b = file.tensor("b");
  EXPECT_EQ(b.scalar_type(), at::kChar);
  EXPECT_EQ(b[0].item<int8_t>(), -1);
  EXPECT_EQ(b[2].item<int8_t>(), 7);
  // In-place edits never reach the file (private mapping).
  a.mul_(2);
  EXPECT_EQ(SafetensorsFile::open(p).tensor("a")[0].item<float>(), 1.5f);
  fs::remove(p);
}

TEST(Safetensors, WritesTheLayoutByHand) {
  const auto p = temp("w.safetensors");
  save_safetensors(p, {{"x", at::tensor({int16_t{258}, int16_t{-1}}), {}}}, {{"format", "pt"}});
  std::ifstream in(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + n) % 8, 0u) << "data must start 8-byte aligned";
  const std::string header = bytes.substr(8, n);
  EXPECT_NE(header.find(R"("x":{"data_offsets":[0,4],"dtype":"I16","shape":[2]})"), std::string::npos) << header;
  const std::string data = bytes.substr(8 + n);
  ASSERT_EQ(data.size(), 4u);
  EXPECT_EQ(static_cast<unsigned char>(data[0]), 0x02);  // 258 little-endian
  EXPECT_EQ(static_cast<unsigned char>(data[1]), 0x01);
  EXPECT_EQ(static_cast<unsigned char>(data[2]), 0xff);
  EXPECT_EQ(static_cast<unsigned char>(data[3]), 0xff);
  fs::remove(p);
}

TEST(Safetensors, RoundTripsEveryCommonDtype) {
  const auto p = temp("rt.safetensors");
  std::vector<NamedTensor> in = {
      {"f64", at::randn({3, 2}, at::kDouble), {}},
      {"f32", at::randn({4}), {}},
      {"f16", at::randn({2, 3}).to(at::kHalf), {}},
      {"bf16", at::randn({5}).to(at::kBFloat16), {}},
      {"i64", at::arange(6, at::kLong), {}},
      {"i32", at::arange(3, at::kInt), {}},
      {"u8", at::arange(7, at::kByte), {}},
      {"b", at::tensor({1, 0, 1}).to(at::kBool), {}},
      {"fp8", at::arange(4, at::kByte), StDtype::F8_E4M3},
      {"empty", at::empty({0, 3}), {}},
      {"strided", at::randn({4, 4}).t(), {}},
  };
  save_safetensors(p, in);
  const auto f = SafetensorsFile::open(p);
  for (const auto& t : in) {
    const auto back = f.tensor(t.name);
    EXPECT_EQ(back.sizes(), t.tensor.sizes()) << t.name;
    EXPECT_TRUE(at::equal(back, t.tensor.contiguous())) << t.name;
  }
  EXPECT_EQ(f.find("fp8")->dtype, StDtype::F8_E4M3);
  EXPECT_EQ(f.find("u8")->dtype, StDtype::U8);
  fs::remove(p);
}

TEST(Safetensors, CorruptFilesNameTheProblem) {
  const auto p = temp("bad.safetensors");
  write_bytes(p, "abc");
  try {
    SafetensorsFile::open(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data_corruption);
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos);
  }
  // Offsets past the end: a truncated file.
  write_bytes(p, with_header(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')));
  try {
    SafetensorsFile::open(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  write_bytes(p, with_header("{not json", ""));
  EXPECT_THROW(SafetensorsFile::open(p), Error);
  fs::remove(p);
  EXPECT_THROW(SafetensorsFile::open(p), Error);
}

}  // namespace
}  // namespace qjobs::model
