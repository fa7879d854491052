// The hub download against a local HTTP server that serves model folders in
// the hub's URL layout (/api/models/ORG/NAME/revision/REV, /ORG/NAME/resolve/
// REV/FILE), with failures injected: a cut connection, a corrupt byte, a
// gated repository.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/hub_download.hpp"
#include "jobs/model/model_source.hpp"
#include "jobs/model/random_model.hpp"

namespace qjobs::model {
namespace {
namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;

std::string shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[256];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  if (p) pclose(p);
  return out;
}

// Hashes computed by other programs: coreutils and git.
std::string sha256sum(const fs::path& p) { return shell("sha256sum '" + p.string() + "'").substr(0, 64); }
std::string git_blob(const fs::path& p) { return shell("git hash-object '" + p.string() + "'").substr(0, 40); }

class FakeHub {
 public:
  explicit FakeHub(fs::path repos)
      : repos_(std::move(repos)), acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeHub() {
    stop_ = true;
    asio::io_context io;
    asio::ip::tcp::socket s(io);
    boost::system::error_code ec;
    s.connect({asio::ip::make_address("127.0.0.1"), port()}, ec);
    thread_.join();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }

  std::atomic<int> requests{0};
  std::atomic<int> range_requests{0};
  std::atomic<long> cut_after{-1};   // next weights download: drop the connection after N bytes
  std::atomic<bool> corrupt{false};  // flip one byte of every file served
  std::string required_token;        // non-empty: 401 without "Bearer <token>"

 private:
  void serve() {
    while (!stop_) {
      asio::ip::tcp::socket sock(io_);
      boost::system::error_code ec;
      acceptor_.accept(sock, ec);
      if (ec || stop_) continue;
      beast::flat_buffer buf;
      http::request<http::string_body> req;
      http::read(sock, buf, req, ec);
      if (ec) continue;
      ++requests;
      handle(sock, req);
      sock.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    }
  }

  void reply(asio::ip::tcp::socket& s, http::status st, const std::string& body) {
    http::response<http::string_body> res{st, 11};
    res.body() = body;
    res.prepare_payload();
    boost::system::error_code ec;
    http::write(s, res, ec);
  }

  void handle(asio::ip::tcp::socket& s, const http::request<http::string_body>& req) {
    if (!required_token.empty() && req[http::field::authorization] != "Bearer " + required_token)
      return reply(s, http::status::unauthorized, "{\"error\":\"gated\"}");
    std::string target(req.target());
    target = target.substr(0, target.find('?'));
    const std::string api = "/api/models/";
    if (target.rfind(api, 0) == 0) {
      const auto rest = target.substr(api.size());  // ORG/NAME/revision/main
      const auto repo = rest.substr(0, rest.find("/revision/"));
      const fs::path dir = repos_ / repo;
      if (!fs::is_directory(dir)) return reply(s, http::status::not_found, "{}");
      json siblings = json::array();
      for (const auto& e : fs::directory_iterator(dir)) {
        const auto name = e.path().filename().string();
        json f = {{"rfilename", name}, {"size", fs::file_size(e.path())}, {"blobId", git_blob(e.path())}};
        if (e.path().extension() == ".safetensors")
          f["lfs"] = {{"sha256", sha256sum(e.path())}, {"size", fs::file_size(e.path())}};
        siblings.push_back(f);
      }
      return reply(
          s, http::status::ok,
          json{{"id", repo}, {"sha", "0123456789abcdef0123456789abcdef01234567"}, {"siblings", siblings}}.dump());
    }
    const auto resolve = target.find("/resolve/");
    if (resolve == std::string::npos) return reply(s, http::status::not_found, "");
    const std::string repo = target.substr(1, resolve - 1);
    const std::string after = target.substr(resolve + 9);  // REV/FILE
    const fs::path file = repos_ / repo / after.substr(after.find('/') + 1);
    if (!fs::exists(file)) return reply(s, http::status::not_found, "");
    std::string body = read_file(file);
    if (corrupt) body[body.size() / 2] ^= 0x5a;
    std::size_t from = 0;
    const std::string range(req[http::field::range]);
    if (!range.empty()) {
      ++range_requests;
      from = std::stoul(range.substr(range.find('=') + 1));
    }
    const long cut = file.extension() == ".safetensors" ? cut_after.exchange(-1) : -1;
    if (cut >= 0) {
      // Promise the whole file, send part of it, and hang up.
      std::string head = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
      asio::write(s, asio::buffer(head + body.substr(0, static_cast<std::size_t>(cut))));
      return;
    }
    http::response<http::string_body> res{from ? http::status::partial_content : http::status::ok, 11};
    res.body() = body.substr(from);
    if (from)
      res.set(http::field::content_range, "bytes " + std::to_string(from) + "-" + std::to_string(body.size() - 1) +
                                              "/" + std::to_string(body.size()));
    res.prepare_payload();
    boost::system::error_code ec;
    http::write(s, res, ec);
  }

  fs::path repos_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

class HubDownload : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("qjobs_hub_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    RandomModelOptions o;
    o.hidden = 32;
    o.intermediate = 64;
    o.layers = 1;
    o.vocab = 64;
    write_random_llama(root_ / "repos/acme/tiny", o);
    std::ofstream(root_ / "repos/acme/tiny/tokenizer_config.json") << "{}";
    std::ofstream(root_ / "repos/acme/tiny/README.md") << "not needed";
    hub_ = std::make_unique<FakeHub>(root_ / "repos");
    opts_.endpoint = hub_->url();
    opts_.cache = root_ / "cache";
  }
  void TearDown() override {
    hub_.reset();
    fs::remove_all(root_);
  }
  fs::path root_;
  std::unique_ptr<FakeHub> hub_;
  HubOptions opts_;
};

TEST_F(HubDownload, DownloadsIntoTheHubCacheLayout) {
  const auto snap = download_model("acme/tiny", opts_);
  EXPECT_EQ(snap, opts_.cache / "models--acme--tiny/snapshots/0123456789abcdef0123456789abcdef01234567");
  EXPECT_EQ(read_file(opts_.cache / "models--acme--tiny/refs/main"), "0123456789abcdef0123456789abcdef01234567");
  EXPECT_TRUE(fs::is_symlink(snap / "model.safetensors"));
  EXPECT_EQ(read_file(snap / "model.safetensors"), read_file(root_ / "repos/acme/tiny/model.safetensors"));
  EXPECT_FALSE(fs::exists(snap / "README.md"));  // not part of a checkpoint
  EXPECT_NO_THROW(Checkpoint::open(snap));
  // A second call finds every blob and fetches only the listing.
  const int before = hub_->requests;
  download_model("acme/tiny", opts_);
  EXPECT_EQ(hub_->requests - before, 1);
}

TEST_F(HubDownload, InterruptedDownloadResumesWithARange) {
  hub_->cut_after = 3000;
  try {
    download_model("acme/tiny", opts_);
    FAIL() << "the cut connection went unnoticed";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_NE(std::string(e.what()).find("interrupted"), std::string::npos) << e.what();
  }
  const auto snap = download_model("acme/tiny", opts_);
  EXPECT_GE(hub_->range_requests.load(), 1);
  EXPECT_EQ(read_file(snap / "config.json"), read_file(root_ / "repos/acme/tiny/config.json"));
  EXPECT_EQ(read_file(snap / "model.safetensors"), read_file(root_ / "repos/acme/tiny/model.safetensors"));
}

TEST_F(HubDownload, CorruptFileIsRejectedAndNamed) {
  hub_->corrupt = true;
  try {
    download_model("acme/tiny", opts_);
    FAIL() << "a corrupt file was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data_corruption);
    EXPECT_NE(std::string(e.what()).find("is corrupt"), std::string::npos) << e.what();
  }
  for (const auto& e : fs::directory_iterator(opts_.cache / "models--acme--tiny/blobs")) ADD_FAILURE() << e.path();
}

TEST_F(HubDownload, GatedRepoNeedsTheToken) {
  hub_->required_token = "hf_secret";
  try {
    download_model("acme/tiny", opts_);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gated"), std::string::npos) << e.what();
  }
  opts_.token = "hf_secret";
  EXPECT_NO_THROW(download_model("acme/tiny", opts_));
}

TEST_F(HubDownload, MissingRepoIsNotFound) {
  try {
    download_model("acme/nothing", opts_);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::not_found);
  }
}

TEST_F(HubDownload, OfflineModeNeverTouchesTheNetwork) {
  ::setenv("HF_ENDPOINT", hub_->url().c_str(), 1);
  ::setenv("QJOBS_CACHE_DIR", (root_ / "qcache").c_str(), 1);
  ::setenv("HF_HUB_OFFLINE", "1", 1);
  EXPECT_THROW(resolve_model_dir("acme/tiny", Environment::from_process()), Error);
  EXPECT_EQ(hub_->requests.load(), 0);
  ::unsetenv("HF_HUB_OFFLINE");
  const auto dir = resolve_model_dir("acme/tiny", Environment::from_process());  // downloads into $QJOBS_CACHE_DIR/hub
  EXPECT_EQ(dir.parent_path().parent_path(), root_ / "qcache/hub/models--acme--tiny");
  ::setenv("HF_HUB_OFFLINE", "1", 1);
  EXPECT_EQ(resolve_model_dir("acme/tiny", Environment::from_process()), dir);  // the cache answers offline
  ::unsetenv("HF_HUB_OFFLINE");
  ::unsetenv("HF_ENDPOINT");
  ::unsetenv("QJOBS_CACHE_DIR");
}

}  // namespace
}  // namespace qjobs::model
