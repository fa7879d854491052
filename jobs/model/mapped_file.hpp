// A whole file mapped private and writable (copy-on-write): tensors may alias
// it, and an in-place edit of such a tensor never reaches the file. The
// mapping lives as long as the last shared_ptr to it.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>

namespace qjobs::model {

class MappedFile {
 public:
  // Throws Error(io) naming the file when it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  unsigned char* data() const { return static_cast<unsigned char*>(addr_); }
  std::size_t size() const { return size_; }

 private:
  MappedFile() = default;
  void* addr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace qjobs::model
