// Fuzz target: the HTTP request path. The bytes are parsed as one request by
// Beast's parser with the server's limits; a request that parses goes
// through the real route table and handlers (Api::handle) over a real
// SQLite store and scheduler in a temporary folder, with a dispatcher that
// starts no process. Checks: nothing throws out of handle(), every reply is
// an HTTP status the API uses, and every JSON reply is valid UTF-8 JSON.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "common/strings.hpp"
#include "server/api.hpp"
#include "server/dispatcher.hpp"
#include "server/scheduler.hpp"
#include "server/store.hpp"

namespace {
namespace fs = std::filesystem;
namespace http = boost::beast::http;
using namespace qjobs::server;

class NoProcesses final : public Dispatcher {
 public:
  std::string backend() const override { return "local"; }
  std::string launch(const LaunchRequest&) override { return local_handle(next_++, "t"); }
  void signal(const std::string&, int) override {}
  void watch(const std::string&) override {}
  std::vector<AttemptUpdate> poll() override { return {}; }

 private:
  int next_ = 100000;
};

struct World {
  fs::path root;
  std::unique_ptr<Store> store;
  NoProcesses dispatcher;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<Api> api;

  World() {
    spdlog::set_level(spdlog::level::off);
    const fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    root = base / ("qjobs_http_fuzz_" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "jobs");
    store = std::make_unique<Store>(root / "qjobs.db");
    scheduler = std::make_unique<Scheduler>(*store, dispatcher, SchedulerOptions{root / "jobs", Capacity{{}, 1}, 1});
    api = std::make_unique<Api>(*store, *scheduler, ApiOptions{root, {}, 1 << 16});
  }
};

World& world() {
  static World w;
  return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& w = world();
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(1 << 16);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_done()) return 0;
  const Request req = parser.release();
  const ApiResult result = w.api->handle(req);  // must not throw
  if (const auto* s = std::get_if<StringResponse>(&result)) {
    const int code = static_cast<int>(s->result_int());
    if (code < 200 || code > 599) std::abort();
    if ((*s)[http::field::content_type] == "application/json") {
      if (!qjobs::valid_utf8(s->body())) std::abort();
      if (nlohmann::json::parse(s->body(), nullptr, false).is_discarded()) std::abort();
    }
  }
  return 0;
}
