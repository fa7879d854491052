// SHA-256 and SHA-1 through OpenSSL's EVP interface, as lowercase hex:
// fingerprints of calibration state and cached baselines, artifact and
// download checksums.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace qjobs {

class Digest {
 public:
  enum class Algo { sha256, sha1 };
  explicit Digest(Algo algo = Algo::sha256);
  ~Digest();
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;

  Digest& update(const void* data, std::size_t size);
  Digest& update(std::string_view s) { return update(s.data(), s.size()); }
  // Streams the file's bytes. Throws Error(io) when it cannot be read.
  Digest& update_file(const std::filesystem::path& p);
  // The first `bytes` bytes of the digest (all when 0) as hex; ends the digest.
  std::string hex(std::size_t bytes = 0);

 private:
  void* ctx_;  // EVP_MD_CTX
};

}  // namespace qjobs
