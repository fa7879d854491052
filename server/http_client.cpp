#include "server/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/error.hpp"

namespace qjobs::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

struct Connection {
  asio::io_context io;
  beast::tcp_stream stream{io};

  Connection(const std::string& host, const std::string& port) {
    tcp::resolver resolver(io);
    beast::error_code ec;
    const auto results = resolver.resolve(host, port, ec);
    if (ec) throw Error(ErrorKind::io, "cannot resolve " + host + ":" + port + ": " + ec.message());
    stream.connect(results, ec);
    if (ec) throw Error(ErrorKind::io, "cannot connect to qjobs-server at " + host + ":" + port + ": " + ec.message());
  }
};

http::request<http::string_body> make_request(const std::string& method, const std::string& target,
                                              const std::string& host, const std::string& token,
                                              const std::string& body,
                                              const std::map<std::string, std::string>& headers) {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, host);
  req.set(http::field::user_agent, "jobctl");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  return req;
}

}  // namespace

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

HttpClient::HttpClient(const std::string& server, std::string token) : token_(std::move(token)) {
  std::string s = server;
  if (s.rfind("http://", 0) == 0) s = s.substr(7);
  while (!s.empty() && s.back() == '/') s.pop_back();
  const auto colon = s.rfind(':');
  host_ = colon == std::string::npos ? s : s.substr(0, colon);
  port_ = colon == std::string::npos ? "8080" : s.substr(colon + 1);
}

HttpResult HttpClient::request(const std::string& method, const std::string& target, const std::string& body,
                               const std::map<std::string, std::string>& headers) {
  Connection c(host_, port_);
  auto req = make_request(method, target, host_, token_, body, headers);
  beast::error_code ec;
  http::write(c.stream, req, ec);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1ull << 32);
  http::read(c.stream, buffer, parser, ec);
  if (ec) throw Error(ErrorKind::io, method + " " + target + ": " + ec.message());
  auto res = parser.release();
  HttpResult out;
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(res.body());
  for (const auto& f : res) {
    std::string name(f.name_string());
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    out.headers[name] = std::string(f.value());
  }
  return out;
}

int HttpClient::stream(const std::string& target, const std::function<void(std::string_view)>& on_data) {
  Connection c(host_, port_);
  auto req = make_request("GET", target, host_, token_, "", {});
  beast::error_code ec;
  http::write(c.stream, req, ec);
  if (ec) throw Error(ErrorKind::io, "GET " + target + ": " + ec.message());
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  http::read_header(c.stream, buffer, parser, ec);
  if (ec) throw Error(ErrorKind::io, "GET " + target + ": " + ec.message());
  std::array<char, 8192> buf;
  while (!parser.is_done()) {
    parser.get().body().data = buf.data();
    parser.get().body().size = buf.size();
    http::read(c.stream, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) break;
    const std::size_t n = buf.size() - parser.get().body().size;
    if (n > 0) on_data(std::string_view(buf.data(), n));
  }
  return static_cast<int>(parser.get().result_int());
}

int HttpClient::download(const std::string& target, const std::filesystem::path& out) {
  Connection c(host_, port_);
  auto req = make_request("GET", target, host_, token_, "", {});
  beast::error_code ec;
  http::write(c.stream, req, ec);
  beast::flat_buffer buffer;
  http::response_parser<http::file_body> parser;
  parser.body_limit(boost::none);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  parser.get().body().open(out.c_str(), beast::file_mode::write, ec);
  if (ec) throw Error(ErrorKind::io, "cannot write " + out.string() + ": " + ec.message());
  http::read(c.stream, buffer, parser, ec);
  if (ec) throw Error(ErrorKind::io, "GET " + target + ": " + ec.message());
  return static_cast<int>(parser.get().result_int());
}

}  // namespace qjobs::server
