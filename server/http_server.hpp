// The HTTP front end: one coroutine session per connection on a single I/O
// thread, with a header and body limit (413), a read timeout, one request in
// flight per connection, and a drain on SIGTERM/SIGINT. The I/O thread only
// moves bytes: handlers (the store, job directories) and file reads for
// log streams run on a small pool, so a slow disk or fsync never stops other
// connections. Log streams send one bounded chunk at a time and wait for
// the client to take it (backpressure), until the read timeout.
//
// Descriptors: the listening and accepted sockets are close-on-exec. At most
// max_connections are open at once. At the cap a new connection closes the
// connection that has waited longest for a request (idle keep-alive, or a
// header still arriving), so idle connections never lock anyone out; only
// when every connection has a request in progress does the next get a 503. When accept fails for lack of descriptors
// (EMFILE/ENFILE) it backs off (10 ms doubling to 1 s) instead of spinning, and the log line is rate-limited.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>

#include "server/api.hpp"

namespace qjobs::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  unsigned short port = 8080;  // 0 picks a free port
  std::size_t body_limit = 1 << 20;
  std::chrono::seconds read_timeout{30};
  std::chrono::milliseconds follow_poll{200};
  int64_t max_connections = 512;     // served at once; more are refused with 503
  int handler_threads = 4;           // pool for handlers and file reads
  int submit_threads = 32;           // POST /jobs: they wait together on one group commit
  ConnectionStats* stats = nullptr;  // counters to update; optional
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, Api& api, HttpOptions options);
  ~HttpServer();

  // Binds and starts accepting. Throws on a bind failure. Returns the bound port.
  unsigned short start();
  // Stops accepting; open sessions finish their current response.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qjobs::server
