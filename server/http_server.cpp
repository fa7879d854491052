#include "server/http_server.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace qjobs::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

// Byte offset where the last `lines` lines of `path` start.
int64_t tail_offset(const std::string& path, int64_t lines) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (lines <= 0) {
    ::close(fd);
    return size;
  }
  off_t pos = size;
  int64_t newlines = 0;
  char buf[8192];
  while (pos > 0) {
    const off_t n = std::min<off_t>(pos, sizeof buf);
    pos -= n;
    if (::pread(fd, buf, static_cast<size_t>(n), pos) != n) break;
    for (off_t i = n - 1; i >= 0; --i) {
      if (buf[i] != '\n') continue;
      // A trailing newline ends the last line; it does not start a new one.
      if (pos + i == size - 1) continue;
      if (++newlines == lines) {
        ::close(fd);
        return pos + i + 1;
      }
    }
  }
  ::close(fd);
  return 0;
}

// Reads up to `max` bytes of `path` from `offset`; empty when none.
std::string read_from(const std::string& path, int64_t offset, std::size_t max) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string out(max, '\0');
  const ssize_t n = ::pread(fd, out.data(), max, offset);
  ::close(fd);
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return out;
}

}  // namespace

struct HttpServer::Impl {
  asio::io_context& io;
  Api& api;
  HttpOptions options;
  tcp::acceptor acceptor;
  asio::thread_pool pool{2};
  bool stopping = false;

  Impl(asio::io_context& io_, Api& api_, HttpOptions o) : io(io_), api(api_), options(std::move(o)), acceptor(io_) {}

  asio::awaitable<void> accept_loop() {
    while (!stopping) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (stopping || ec == asio::error::operation_aborted) co_return;
        spdlog::warn("accept: {}", ec.message());
        continue;
      }
      asio::co_spawn(io, session(beast::tcp_stream(std::move(socket))), asio::detached);
    }
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

  asio::awaitable<void> stream_file(beast::tcp_stream& stream, const StreamPlan& plan, unsigned version) {
    http::response<http::empty_body> res{http::status::ok, version};
    res.set(http::field::content_type, plan.content_type);
    res.set(http::field::server, "qjobs");
    res.set(http::field::cache_control, "no-store");
    res.chunked(true);
    res.keep_alive(false);
    http::response_serializer<http::empty_body> sr{res};
    stream.expires_after(options.read_timeout);
    auto [hec, hn] = co_await http::async_write_header(stream, sr, use_tuple);
    if (hec) co_return;

    const std::string path = plan.file.string();
    int64_t offset = plan.tail_lines ? tail_offset(path, *plan.tail_lines) : 0;
    asio::steady_timer timer(io);
    bool last_pass = false;
    while (true) {
      std::string data = read_from(path, offset, 1 << 16);
      if (!data.empty()) {
        offset += static_cast<int64_t>(data.size());
        stream.expires_after(options.read_timeout);
        auto [ec, n] = co_await asio::async_write(stream, http::make_chunk(asio::buffer(data)), use_tuple);
        if (ec) co_return;
        continue;
      }
      if (!plan.follow || last_pass || stopping) break;
      // One more read after the job ends catches its last lines.
      if (!api.job_active(plan.job_id)) last_pass = true;
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
      auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
      if (hec == http::error::body_limit) {
        co_await refuse_body(stream, parser.get().version());
        break;
      }
      if (hec) {
        if (hec == http::error::header_limit) {
          auto res = Api::error(http::status::request_header_fields_too_large, "request headers too large",
                                "invalid_input", 11);
          co_await send(stream, res, false);
        } else if (hec != http::error::end_of_stream && hec != asio::error::eof &&
                   hec != beast::error::timeout && hec != asio::error::connection_reset) {
          auto res = Api::error(http::status::bad_request, "malformed HTTP request: " + hec.message(),
                                "invalid_input", 11);
          co_await send(stream, res, false);
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
      if (bec) break;
      Request req = parser.release();
      const bool keep_alive = req.keep_alive() && !stopping;

      ApiResult result = api.handle(req);
      bool ok = true;
      if (auto* s = std::get_if<StringResponse>(&result)) {
        ok = co_await send(stream, *s, keep_alive);
      } else if (auto* f = std::get_if<FileResponse>(&result)) {
        ok = co_await send(stream, *f, keep_alive);
      } else if (auto* d = std::get_if<Deferred>(&result)) {
        co_await asio::post(pool, asio::use_awaitable);
        StringResponse res = d->work();
        co_await asio::post(io, asio::use_awaitable);
        ok = co_await send(stream, res, keep_alive);
      } else if (auto* plan = std::get_if<StreamPlan>(&result)) {
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

HttpServer::~HttpServer() { impl_->pool.join(); }

unsigned short HttpServer::start() {
  const tcp::endpoint ep(asio::ip::make_address(impl_->options.host), impl_->options.port);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
  return impl_->acceptor.local_endpoint().port();
}

void HttpServer::stop() {
  impl_->stopping = true;
  beast::error_code ec;
  impl_->acceptor.close(ec);
}

}  // namespace qjobs::server
