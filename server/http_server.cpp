#include "server/http_server.hpp"

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <list>
#include <cerrno>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "common/job_dir.hpp"
#include "common/logging.hpp"

namespace qjobs::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

// tail=N scans back at most this far; a longer last line starts mid-line.
constexpr int64_t kTailScanLimit = 16 << 20;

// Byte offset where the last `lines` lines of `path` start, reading back
// from the end in 64 KiB blocks, never more than kTailScanLimit bytes.
int64_t tail_offset(const std::filesystem::path& root, const std::string& rel, int64_t lines) {
  const int fd = open_job_file(root, rel);
  if (fd < 0) return 0;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size < 0) {
    ::close(fd);
    return 0;
  }
  if (lines <= 0) {
    ::close(fd);
    return size;
  }
  const off_t floor = std::max<off_t>(0, size - kTailScanLimit);
  off_t pos = size;
  int64_t newlines = 0;
  std::vector<char> buf(1 << 16);
  while (pos > floor) {
    const off_t n = std::min<off_t>(pos - floor, static_cast<off_t>(buf.size()));
    pos -= n;
    if (::pread(fd, buf.data(), static_cast<size_t>(n), pos) != n) break;
    for (off_t i = n - 1; i >= 0; --i) {
      if (buf[static_cast<std::size_t>(i)] != '\n') continue;
      // A trailing newline ends the last line; it does not start a new one.
      if (pos + i == size - 1) continue;
      if (++newlines == lines) {
        ::close(fd);
        return pos + i + 1;
      }
    }
  }
  ::close(fd);
  return floor;
}

// Reads up to `max` bytes of the job file from `offset`; empty when none
// (or when it is a link or not a regular file).
std::string read_from(const std::filesystem::path& root, const std::string& rel, int64_t offset, std::size_t max) {
  const int fd = open_job_file(root, rel);
  if (fd < 0) return {};
  std::string out(max, '\0');
  const ssize_t n = ::pread(fd, out.data(), max, offset);
  ::close(fd);
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return out;
}

void set_cloexec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

bool out_of_descriptors(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors || ec.value() == ENFILE || ec == asio::error::no_buffer_space ||
         ec == asio::error::no_memory;
}

// Read errors that mean the client went away or was too slow: no answer.
bool quiet_close(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == beast::error::timeout ||
         ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
         ec == asio::error::broken_pipe || ec == http::error::partial_message;
}

}  // namespace

struct HttpServer::Impl {
  asio::io_context& io;
  Api& api;
  HttpOptions options;
  tcp::acceptor acceptor;
  // Four lanes, so that no kind of work queues behind another: reads
  // (GET/HEAD handlers), submissions (POST /jobs: many threads, since
  // concurrent submissions wait on one shared commit, and the more wait
  // together the fewer fsyncs), other writes (handlers that change state:
  // they serialize on the store's write lock and wait for its fsync) and log
  // streams (file chunks for logs/events). /healthz needs none: it reads
  // counters only.
  asio::thread_pool read_pool;
  asio::thread_pool submit_pool;
  asio::thread_pool write_pool;
  asio::thread_pool stream_pool;
  std::atomic<bool> stopping{false};
  ConnectionStats own_stats;
  ConnectionStats* stats;
  LogLimiter accept_log{10};
  LogLimiter malformed_log{10};
  int refusing = 0;  // refusal writes in flight (I/O thread only)
  // Sessions waiting for a request (a new connection, a keep-alive one
  // between requests, or one whose header is still arriving), oldest first.
  // At --max-connections a new connection closes the oldest of these rather
  // than being refused, so idle connections can never lock others out; only
  // connections with a request in progress make the server answer 503.
  // I/O thread only.
  struct Waiting {
    beast::tcp_stream* stream;
    bool evicted = false;
  };
  std::list<Waiting*> waiting;
  int evicting = 0;  // closed waiting sessions whose coroutine has not ended yet

  Impl(asio::io_context& io_, Api& api_, HttpOptions o)
      : io(io_),
        api(api_),
        options(std::move(o)),
        acceptor(io_),
        read_pool(static_cast<std::size_t>(std::max(1, options.handler_threads))),
        submit_pool(static_cast<std::size_t>(std::max(1, options.submit_threads))),
        write_pool(static_cast<std::size_t>(std::max(1, options.handler_threads / 2))),
        stream_pool(static_cast<std::size_t>(std::max(1, options.handler_threads / 2))),
        stats(options.stats ? options.stats : &own_stats) {
    stats->max = options.max_connections;
  }

  // Runs f() on `pool` and resumes the caller on its own (I/O) executor
  // with the result; an exception from f is rethrown here. (A bare
  // co_await post(pool, use_awaitable) would resume on the I/O thread and run
  // the work there.)
  template <class F>
  asio::awaitable<std::invoke_result_t<F&>> on_pool(asio::thread_pool& pool, F f) {
    using R = std::invoke_result_t<F&>;
    co_return co_await asio::co_spawn(
        pool, [f = std::move(f)]() mutable -> asio::awaitable<R> { co_return f(); }, asio::use_awaitable);
  }

  asio::thread_pool& lane(const Request& req) {
    if (req.method() == http::verb::get || req.method() == http::verb::head) return read_pool;
    if (req.method() == http::verb::post && (req.target() == "/jobs" || req.target().starts_with("/jobs?")))
      return submit_pool;
    return write_pool;
  }

  asio::awaitable<void> accept_loop() {
    auto backoff = std::chrono::milliseconds(10);
    asio::steady_timer pause(io);
    while (!stopping) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (stopping || ec == asio::error::operation_aborted) co_return;
        ++stats->accept_errors;
        uint64_t held = 0;
        if (accept_log.allow(&held))
          spdlog::warn("accept: {}{}", ec.message(),
                       held ? " (" + std::to_string(held) + " more since the last report)" : "");
        if (out_of_descriptors(ec)) {
          // Nothing frees a descriptor faster than the open connections
          // finishing: wait instead of spinning on the ready listen socket.
          pause.expires_after(backoff);
          co_await pause.async_wait(use_tuple);
          backoff = std::min<std::chrono::milliseconds>(std::chrono::seconds(1), backoff * 2);
        }
        continue;
      }
      backoff = std::chrono::milliseconds(10);
      set_cloexec(socket.native_handle());
      if (stats->open.load() - evicting >= options.max_connections && !waiting.empty()) {
        Waiting* oldest = waiting.front();
        waiting.pop_front();
        oldest->evicted = true;
        ++evicting;
        ++stats->evicted;
        beast::error_code cec;
        oldest->stream->socket().cancel(cec);
        oldest->stream->socket().shutdown(tcp::socket::shutdown_both, cec);
      } else if (stats->open.load() - evicting >= options.max_connections) {
        ++stats->refused;
        if (refusing < 64) {
          ++refusing;
          asio::co_spawn(io, refuse(std::move(socket)), [this](const std::exception_ptr&) { --refusing; });
        }
        continue;  // past 64 refusals in flight the socket just closes
      }
      ++stats->open;
      asio::co_spawn(io, session(beast::tcp_stream(std::move(socket))), [this](const std::exception_ptr& e) {
        --stats->open;
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("session: {}", ex.what());
        }
      });
    }
  }

  // A polite no to a connection over the limit: one 503, then close.
  asio::awaitable<void> refuse(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    auto res = Api::error(http::status::service_unavailable,
                          "too many connections (the server serves at most " + std::to_string(options.max_connections) +
                              " at once); retry shortly",
                          "unavailable", 11);
    res.set(http::field::retry_after, "1");
    res.keep_alive(false);
    stream.expires_after(std::chrono::seconds(2));
    co_await http::async_write(stream, res, use_tuple);
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  }

  template <class Response>
  asio::awaitable<bool> send(beast::tcp_stream& stream, Response& res, bool keep_alive) {
    res.keep_alive(keep_alive);
    stream.expires_after(options.read_timeout);
    auto [ec, n] = co_await http::async_write(stream, res, use_tuple);
    co_return !ec;
  }

  // Answers 413 and reads away what the client still sends, so that it sees
  // the answer instead of a reset connection.
  asio::awaitable<void> refuse_body(beast::tcp_stream& stream, unsigned version) {
    auto res = Api::error(http::status::payload_too_large,
                          "request body exceeds the limit of " + std::to_string(options.body_limit) + " bytes",
                          "invalid_input", version);
    co_await send(stream, res, false);
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.expires_after(std::chrono::seconds(2));
    std::array<char, 65536> sink;
    std::size_t drained = 0;
    while (drained < 64 * options.body_limit) {
      auto [rec, n] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
      if (rec) break;
      drained += n;
    }
  }

  // A request whose framing is broken (bad chunk, bad header): 400 and close.
  asio::awaitable<void> refuse_malformed(beast::tcp_stream& stream, const boost::system::error_code& ec,
                                         const char* where) {
    ++stats->malformed;
    uint64_t held = 0;
    if (malformed_log.allow(&held))
      spdlog::warn("malformed HTTP request {}: {}{}", where, ec.message(),
                   held ? " (" + std::to_string(held) + " more since the last report)" : "");
    auto res = Api::error(http::status::bad_request,
                          std::string("malformed HTTP request ") + where + ": " + ec.message(), "invalid_input", 11);
    co_await send(stream, res, false);
  }

  asio::awaitable<void> stream_file(beast::tcp_stream& stream, const StreamPlan& plan, unsigned version) {
    http::response<http::empty_body> res{http::status::ok, version};
    res.set(http::field::content_type, plan.content_type);
    res.set(http::field::server, "qjobs");
    res.set(http::field::cache_control, "no-store");
    res.chunked(true);
    res.keep_alive(false);
    http::response_serializer<http::empty_body> sr{res};
    // A small kernel send buffer: a client that does not read holds 128 KiB
    // of the server's memory, not the several MiB loopback autotuning gives.
    beast::error_code bec;
    stream.socket().set_option(asio::socket_base::send_buffer_size(128 * 1024), bec);
    stream.expires_after(options.read_timeout);
    auto [hec, hn] = co_await http::async_write_header(stream, sr, use_tuple);
    if (hec) co_return;

    int64_t offset = 0;
    if (plan.tail_lines)
      offset = co_await on_pool(stream_pool, [&] { return tail_offset(plan.job_root, plan.file, *plan.tail_lines); });
    asio::steady_timer timer(io);
    bool last_pass = false;
    while (true) {
      // File reads and the job's state come from the pool; the I/O thread
      // only writes. One 64 KiB chunk at a time: the next read waits until
      // the client has taken this one.
      auto [data, active] = co_await on_pool(stream_pool, [&] {
        std::pair<std::string, bool> r{read_from(plan.job_root, plan.file, offset, 1 << 16), true};
        if (r.first.empty() && plan.follow && !last_pass) {
          try {
            r.second = api.job_active(plan.job_id);
          } catch (const std::exception&) {
            r.second = true;  // the store could not say: keep following
          }
        }
        return r;
      });
      if (!data.empty()) {
        offset += static_cast<int64_t>(data.size());
        stream.expires_after(options.read_timeout);
        auto [ec, n] = co_await asio::async_write(stream, http::make_chunk(asio::buffer(data)), use_tuple);
        if (ec) co_return;
        continue;
      }
      if (!plan.follow || last_pass || stopping) break;
      // One more read after the job ends catches its last lines.
      if (!active) last_pass = true;
      timer.expires_after(options.follow_poll);
      co_await timer.async_wait(use_tuple);
    }
    stream.expires_after(options.read_timeout);
    co_await asio::async_write(stream, http::make_chunk_last(), use_tuple);
  }

  asio::awaitable<void> session(beast::tcp_stream stream) {
    beast::flat_buffer buffer;
    while (!stopping) {
      stream.expires_after(options.read_timeout);
      http::request_parser<http::string_body> parser;
      parser.header_limit(16 * 1024);
      parser.body_limit(options.body_limit);
      Waiting me{&stream};
      const auto place = waiting.insert(waiting.end(), &me);
      auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
      if (me.evicted) {
        --evicting;
        co_return;  // closed for a newer connection at the cap
      }
      waiting.erase(place);
      if (hec == http::error::body_limit) {
        co_await refuse_body(stream, parser.get().version());
        break;
      }
      if (hec) {
        if (hec == http::error::header_limit) {
          auto res = Api::error(http::status::request_header_fields_too_large, "request headers too large",
                                "invalid_input", 11);
          co_await send(stream, res, false);
        } else if (!quiet_close(hec)) {
          co_await refuse_malformed(stream, hec, "header");
        }
        break;
      }
      const unsigned version = parser.get().version();
      if (parser.content_length() && *parser.content_length() > options.body_limit) {
        co_await refuse_body(stream, version);
        break;
      }
      auto [bec, bn] = co_await http::async_read(stream, buffer, parser, use_tuple);
      if (bec == http::error::body_limit) {
        co_await refuse_body(stream, version);
        break;
      }
      if (bec) {
        if (!quiet_close(bec)) co_await refuse_malformed(stream, bec, "body");
        break;
      }
      Request req = parser.release();
      const bool keep_alive = req.keep_alive() && !stopping;

      // Handlers read and write the store and job folders: off the I/O thread.
      const auto run = [&] {
        std::optional<ApiResult> r;
        try {
          r.emplace(api.handle(req));
        } catch (const std::exception& e) {
          r.emplace(Api::error(http::status::internal_server_error, e.what(), "internal", version));
        }
        return r;
      };
      std::optional<ApiResult> result;
      if (Api::answers_from_memory(req)) result = run();
      else result = co_await on_pool(lane(req), run);
      bool ok = true;
      if (auto* s = std::get_if<StringResponse>(&*result)) {
        ok = co_await send(stream, *s, keep_alive);
      } else if (auto* f = std::get_if<FileResponse>(&*result)) {
        ok = co_await send(stream, *f, keep_alive);
      } else if (auto* plan = std::get_if<StreamPlan>(&*result)) {
        co_await stream_file(stream, *plan, version);
        ok = false;
      }
      if (!ok || !keep_alive) break;
    }
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }
};

HttpServer::HttpServer(asio::io_context& io, Api& api, HttpOptions options)
    : impl_(std::make_unique<Impl>(io, api, std::move(options))) {}

HttpServer::~HttpServer() {
  impl_->read_pool.join();
  impl_->submit_pool.join();
  impl_->write_pool.join();
  impl_->stream_pool.join();
}

unsigned short HttpServer::start() {
  const tcp::endpoint ep(asio::ip::make_address(impl_->options.host), impl_->options.port);
  impl_->acceptor.open(ep.protocol());
  set_cloexec(impl_->acceptor.native_handle());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(impl_->io, impl_->accept_loop(), [](const std::exception_ptr& e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::critical("accept loop ended: {}", ex.what());
    }
  });
  return impl_->acceptor.local_endpoint().port();
}

void HttpServer::stop() {
  impl_->stopping = true;
  beast::error_code ec;
  impl_->acceptor.close(ec);
}

}  // namespace qjobs::server
