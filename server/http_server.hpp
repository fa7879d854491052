// The HTTP front end: one coroutine session per connection on a single event
// loop thread, with a header and body limit (413), a read timeout, one request
// in flight per connection, and a drain on SIGTERM/SIGINT.
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
