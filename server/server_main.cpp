// qjobs-server: the HTTP API, the SQLite store and the scheduler in one
// process.
//   qjobs-server --listen HOST:PORT --user-data DIR (--gpus LIST | --slots N)
//                [--tokens-file F] [--worker PATH] [--cancel-grace S]
#include <stdlib.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/logging.hpp"
#include "common/strings.hpp"
#include "server/api.hpp"
#include "server/dispatcher.hpp"
#include "server/http_server.hpp"
#include "server/scheduler.hpp"
#include "server/store.hpp"

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace qjobs;
using namespace qjobs::server;

namespace {

fs::path self_dir() {
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::current_path() : exe.parent_path();
}

std::set<std::string> read_tokens(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw Error(ErrorKind::io, "cannot read tokens file " + p.string());
  std::set<std::string> tokens;
  std::string line;
  while (std::getline(in, line)) {
    const auto t = trim(line);
    if (!t.empty() && t[0] != '#') tokens.insert(t);
  }
  if (tokens.empty()) throw Error(ErrorKind::invalid_input, "tokens file " + p.string() + " holds no token");
  return tokens;
}

void schedule_ticks(asio::steady_timer& timer, Scheduler& scheduler) {
  timer.expires_after(std::chrono::milliseconds(100));
  timer.async_wait([&timer, &scheduler](const boost::system::error_code& ec) {
    if (ec) return;
    try {
      scheduler.tick();
    } catch (const std::exception& e) {
      spdlog::error("scheduler: {}", e.what());
    }
    schedule_ticks(timer, scheduler);
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qjobs-server: a job server for compressing language models"};
  std::string listen = "127.0.0.1:8080";
  std::string user_data = "user_data";
  std::string gpus;
  int slots = 1;
  std::string tokens_file;
  std::string worker;
  double cancel_grace = 10;
  std::size_t body_limit = 1 << 20;
  std::string log_level = "info";
  app.add_option("--listen", listen, "HOST:PORT to serve on (port 0 picks a free one)")->capture_default_str();
  app.add_option("--user-data", user_data, "folder for the database and job directories")->capture_default_str();
  auto* gpus_opt = app.add_option("--gpus", gpus, "CUDA device ids to schedule on, e.g. 0,1");
  app.add_option("--slots", slots, "CPU jobs at once when no GPUs are given")
      ->capture_default_str()->check(CLI::Range(1, 1024))->excludes(gpus_opt);
  app.add_option("--tokens-file", tokens_file, "bearer tokens, one per line; none: no authentication");
  app.add_option("--worker", worker, "qjobs-worker binary (default: next to this one)");
  app.add_option("--cancel-grace", cancel_grace, "seconds between SIGTERM and SIGKILL")->capture_default_str();
  app.add_option("--body-limit", body_limit, "largest request body in bytes")->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  setup_logging("server", std::nullopt, log_level);
  try {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos) throw Error(ErrorKind::invalid_input, "--listen must be HOST:PORT");
    const auto port = parse_int(listen.substr(colon + 1));
    if (!port || *port < 0 || *port > 65535) throw Error(ErrorKind::invalid_input, "--listen: bad port");

    const fs::path root = fs::absolute(user_data);
    fs::create_directories(root / "jobs");
    // Workers inherit these: downloads land in the server's cache, and
    // dataset names resolve under user_data/datasets (unless set already).
    ::setenv("QJOBS_CACHE_DIR", (root / ".cache").c_str(), 0);
    ::setenv("QJOBS_DATA_DIR", (root / "datasets").c_str(), 0);

    Capacity capacity;
    if (!gpus.empty()) {
      for (const auto& g : split(gpus, ','))
        if (auto t = trim(g); !t.empty()) capacity.gpus.push_back(t);
    } else {
      capacity.slots = slots;
    }
    const fs::path worker_bin = worker.empty() ? self_dir() / "qjobs-worker" : fs::path(worker);
    if (!fs::exists(worker_bin)) throw Error(ErrorKind::not_found, "worker binary " + worker_bin.string() + " not found");

    Store store(root / "qjobs.db");
    LocalDispatcher dispatcher(worker_bin);
    Scheduler scheduler(store, dispatcher, {root / "jobs", capacity, cancel_grace});
    scheduler.recover();

    ApiOptions api_options{root, {}, body_limit};
    if (!tokens_file.empty()) api_options.tokens = read_tokens(tokens_file);
    Api api(store, scheduler, api_options);

    asio::io_context io(1);
    HttpOptions http_options;
    http_options.host = listen.substr(0, colon);
    http_options.port = static_cast<unsigned short>(*port);
    http_options.body_limit = body_limit;
    HttpServer http(io, api, http_options);
    const auto bound = http.start();
    // The one line scripts wait for: the port actually bound.
    std::cout << "qjobs-server listening on " << http_options.host << ":" << bound << std::endl;
    spdlog::info("listening on {}:{}, user data {}, capacity {} {}", http_options.host, bound, root.string(),
                 capacity.size(), capacity.gpu_mode() ? "GPUs" : "CPU slots");

    asio::steady_timer ticker(io);
    schedule_ticks(ticker, scheduler);

    asio::signal_set children(io, SIGCHLD);
    std::function<void()> wait_children = [&] {
      children.async_wait([&](const boost::system::error_code& ec, int) {
        if (ec) return;
        scheduler.tick();
        wait_children();
      });
    };
    wait_children();

    asio::signal_set stop_signals(io, SIGTERM, SIGINT);
    asio::steady_timer drain(io);
    stop_signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: draining; running workers keep going and are adopted at the next start", sig);
      http.stop();
      ticker.cancel();
      children.cancel();
      drain.expires_after(std::chrono::seconds(1));
      drain.async_wait([&](const boost::system::error_code&) { io.stop(); });
    });
    std::signal(SIGPIPE, SIG_IGN);
    io.run();
    spdlog::info("stopped");
    return 0;
  } catch (const Error& e) {
    spdlog::critical("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
}
