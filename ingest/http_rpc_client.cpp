#include "ingest/http_rpc_client.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <optional>

#include <spdlog/spdlog.h>

#include "ingest/retry_after.hpp"
#include "ingest/tls_context.hpp"
#include "ingest/token_bucket.hpp"
#include "ingest/url.hpp"

namespace chainidx::ingest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

struct HttpRpcClient::Impl {
  asio::any_io_executor executor;
  Url url;
  std::string redacted;
  Options options;
  TokenBucket bucket;
  // A kept-alive connection; up to options.max_in_flight of them carry requests at once.
  struct Connection {
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
    bool connected() const { return plain.has_value() || tls.has_value(); }
    void drop() {
      plain.reset();
      tls.reset();
    }
  };
  std::vector<std::unique_ptr<Connection>> idle;
  std::size_t busy = 0;
  double in_flight_limit;       // adaptive: halved on throttling, +1 per 20 served requests
  std::size_t served_since = 0;
  asio::steady_timer freed;     // cancelled when a connection is handed back
  std::uint64_t next_id = 1;
  std::uint64_t sent = 0;
  RpcObserver observer;  // told of every request (metrics)
  std::uint64_t calls = 0;

  Impl(asio::any_io_executor ex, const std::string& text, Options o)
      : executor(ex), url(*parse_url(text)), redacted(o.name.empty() ? endpoint_label(text) : o.name), options(o),
        bucket(o.requests_per_second, o.burst, TokenBucket::Clock::now()),
        in_flight_limit(static_cast<double>(std::max<std::size_t>(1, o.max_in_flight))), freed(ex) {}

  std::size_t allowed_in_flight() const { return std::max<std::size_t>(1, static_cast<std::size_t>(in_flight_limit)); }

  // A connection for one request: an idle one, a new one while fewer than the limit are busy,
  // or the next one handed back.
  Task<std::unique_ptr<Connection>> acquire() {
    while (busy >= allowed_in_flight()) {
      freed.expires_at(asio::steady_timer::time_point::max());
      boost::system::error_code ec;
      co_await freed.async_wait(asio::redirect_error(use_awaitable, ec));
    }
    ++busy;
    if (!idle.empty()) {
      auto c = std::move(idle.back());
      idle.pop_back();
      co_return c;
    }
    co_return std::make_unique<Connection>();
  }
  void release(std::unique_ptr<Connection> c) {
    --busy;
    if (c->connected() && idle.size() < allowed_in_flight()) idle.push_back(std::move(c));
    freed.cancel();
  }

  // One token per JSON-RPC call, batches included: providers count (and bill) the calls inside
  // a batch, not the HTTP request that carries them.
  Task<void> wait_for_tokens(std::size_t calls) {
    for (std::size_t i = 0; i < calls; ++i) co_await wait_for_token();
    this->calls += calls;
  }

  Task<void> wait_for_token() {
    for (;;) {
      auto wait = bucket.try_take(TokenBucket::Clock::now());
      if (wait == std::chrono::nanoseconds::zero()) co_return;
      asio::steady_timer t(executor, wait);
      co_await t.async_wait(use_awaitable);
    }
  }

  Task<void> connect(Connection& c) {
    auto& plain = c.plain;
    auto& tls = c.tls;
    tcp::resolver resolver(executor);
    auto endpoints = co_await resolver.async_resolve(url.host, url.port, use_awaitable);
    if (url.tls()) {
      tls.emplace(executor, client_tls_context());
      if (!SSL_set_tlsext_host_name(tls->native_handle(), url.host.c_str()))
        throw RpcError(RpcError::Kind::kTransport, redacted + ": cannot set TLS SNI");
      tls->set_verify_callback(asio::ssl::host_name_verification(url.host));
      beast::get_lowest_layer(*tls).expires_after(options.timeout);
      co_await beast::get_lowest_layer(*tls).async_connect(endpoints, use_awaitable);
      co_await tls->async_handshake(asio::ssl::stream_base::client, use_awaitable);
    } else {
      plain.emplace(executor);
      plain->expires_after(options.timeout);
      co_await plain->async_connect(endpoints, use_awaitable);
    }
  }

  template <class Stream>
  Task<http::response<http::string_body>> exchange(Stream& stream, http::request<http::string_body>& req) {
    beast::get_lowest_layer(stream).expires_after(options.timeout);
    co_await http::async_write(stream, req, use_awaitable);
    // Beast reads at most the buffer's free capacity at a time, and a new flat_buffer has 512
    // bytes: without room, a batch answer of megabytes took thousands of reads and timer arms.
    beast::flat_buffer buffer;
    buffer.reserve(64 * 1024);
    http::response_parser<http::string_body> parser;
    parser.body_limit(256 * 1024 * 1024);  // a full block's receipts can be large; not unbounded
    co_await http::async_read(stream, buffer, parser, use_awaitable);
    co_return parser.release();
  }

  // One HTTP POST; reconnects once when a kept-alive connection turns out to be closed.
  Task<std::string> post(std::string body, std::size_t calls_in_body) {
    co_await wait_for_tokens(calls_in_body);
    http::request<http::string_body> req{http::verb::post, url.target, 11};
    req.set(http::field::host, url.host);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::user_agent, "chainidx");
    if (!url.credentials.empty()) req.set(http::field::authorization, url.authorization());
    req.keep_alive(true);
    req.body() = std::move(body);
    req.prepare_payload();
    http::response<http::string_body> res;
    std::unique_ptr<Connection> conn = co_await acquire();
    // Handed back however this ends; the coroutine frame owns it until then.
    struct Return {
      Impl* impl;
      std::unique_ptr<Connection>& conn;
      ~Return() { impl->release(std::move(conn)); }
    } give_back{this, conn};
    for (int attempt = 0;; ++attempt) {
      bool reused = conn->connected();
      try {
        if (!conn->connected()) co_await connect(*conn);
        ++sent;
        // Not a conditional expression: g++ 12 mis-compiles co_await inside ?: .
        if (conn->tls) res = co_await exchange(*conn->tls, req);
        else res = co_await exchange(*conn->plain, req);
        break;
      } catch (const boost::system::system_error& e) {
        conn->drop();
        const auto ec = e.code();
        // Only a kept-alive connection that the server had closed before our request reached it
        // is retried silently (once): the request was never served. A timeout, or trouble on a
        // new connection, is the endpoint's failure and goes to the caller.
        bool closed_before_answer = ec == http::error::end_of_stream || ec == asio::error::eof ||
                                    ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
        if (reused && attempt == 0 && closed_before_answer) continue;
        std::string what = ec == beast::error::timeout
                               ? "no answer within " + std::to_string(options.timeout.count() / 1000) + " s (chain.http_timeout_seconds)"
                               : ec.message();
        throw RpcError(RpcError::Kind::kTransport, redacted + ": " + what);
      }
    }
    if (!res.keep_alive()) conn->drop();
    if (res.result_int() != 200) {
      std::optional<std::chrono::milliseconds> retry_after;
      if (auto it = res.find(http::field::retry_after); it != res.end()) {
        RetryAfter parsed = parse_retry_after(std::string_view(it->value().data(), it->value().size()),
                                              std::chrono::system_clock::now(), options.retry_after_max);
        if (!parsed.warning.empty()) spdlog::warn("event=retry_after_adjusted endpoint={} message=\"{}\"", redacted, parsed.warning);
        retry_after = parsed.delay;
      }
      if (res.result_int() == 429) {
        // Honour the server: no request to this endpoint before Retry-After (or 1 s), and slow down.
        // When the server said when to come back, that pause is this answer's back-off; the rate is
        // cut once per 10 s of such answers, so that a provider throttling a share of requests
        // whatever their rate does not drive the rate to its floor (the pauses already hold it).
        bucket.pause_until(TokenBucket::Clock::now() + retry_after.value_or(std::chrono::seconds(1)));
        throttled(retry_after ? std::chrono::seconds(10) : std::chrono::seconds(1));
      }
      throw RpcError(RpcError::Kind::kHttpStatus,
                     redacted + ": HTTP " + std::to_string(res.result_int()) + " " + std::string(res.reason()),
                     res.result_int(), retry_after);
    }
    co_return std::move(res.body());
  }

  // The provider said "too fast": halve this endpoint's rate (logged), then earn it back.
  void throttled(std::chrono::seconds cut_interval = std::chrono::seconds(1)) {
    served_since = 0;
    in_flight_limit = std::max(1.0, in_flight_limit / 2);
    double before = bucket.rate();
    if (bucket.on_throttled(TokenBucket::Clock::now(), cut_interval))
      spdlog::warn("event=rate_adjusted endpoint={} rate={:.2f} was={:.2f} ceiling={:.2f} reason=\"throttled by the provider\"",
                   redacted, bucket.rate(), before, options.requests_per_second);
  }
  void served(std::size_t calls = 1) {
    if (in_flight_limit < static_cast<double>(options.max_in_flight) && ++served_since >= 20) {
      served_since = 0;
      in_flight_limit += 1;
      freed.cancel();
    }
    bool was_below = bucket.rate() < options.requests_per_second;
    bucket.on_success(TokenBucket::Clock::now(), calls);
    if (was_below && bucket.rate() >= options.requests_per_second)
      spdlog::info("event=rate_adjusted endpoint={} rate={:.2f} reason=\"back at the configured rate\"", redacted, bucket.rate());
  }
};

HttpRpcClient::HttpRpcClient(asio::any_io_executor executor, std::string url, Options options)
    : impl_(std::make_unique<Impl>(executor, url, options)) {}

HttpRpcClient::~HttpRpcClient() = default;

const std::string& HttpRpcClient::endpoint() const { return impl_->redacted; }
std::uint64_t HttpRpcClient::requests_sent() const { return impl_->sent; }
std::uint64_t HttpRpcClient::calls_sent() const { return impl_->calls; }
std::size_t HttpRpcClient::in_flight_limit() const { return impl_->allowed_in_flight(); }

std::chrono::nanoseconds HttpRpcClient::rate_wait() const { return impl_->bucket.wait(TokenBucket::Clock::now()); }

const char* outcome_name(RpcObservation::Outcome outcome) {
  switch (outcome) {
    case RpcObservation::Outcome::kOk: return "ok";
    case RpcObservation::Outcome::kRpcError: return "rpc_error";
    case RpcObservation::Outcome::kThrottled: return "throttled";
    case RpcObservation::Outcome::kHttpError: return "http_error";
    case RpcObservation::Outcome::kTransport: return "transport";
    case RpcObservation::Outcome::kMalformed: return "malformed";
  }
  return "unknown";
}

// Reports one request to the observer when it goes out of scope: ok unless told otherwise, and
// for an exception, what kind of failure it was.
class HttpRpcClient::Observed {
 public:
  // `method` is copied: the request it names is moved away before the answer comes.
  Observed(const RpcObserver& observer, std::string_view endpoint, std::string_view method, std::size_t calls)
      : observer_(observer), method_(method), o_{endpoint, {}, calls}, began_(std::chrono::steady_clock::now()) {}
  Observed(const Observed&) = delete;
  Observed& operator=(const Observed&) = delete;
  ~Observed() {
    if (!observer_) return;
    o_.method = method_;
    o_.duration = std::chrono::steady_clock::now() - began_;
    if (std::uncaught_exceptions() > uncaught_ && !failed_) o_.outcome = RpcObservation::Outcome::kTransport;
    try {
      observer_(o_);
    } catch (...) {
    }
  }
  void failed(const RpcError& e) {
    failed_ = true;
    using K = RpcError::Kind;
    if (e.kind() == K::kHttpStatus) o_.outcome = e.code() == 429 ? RpcObservation::Outcome::kThrottled : RpcObservation::Outcome::kHttpError;
    else if (e.kind() == K::kMalformed) o_.outcome = RpcObservation::Outcome::kMalformed;
    else if (e.kind() == K::kRpc) o_.outcome = RpcObservation::Outcome::kRpcError;
    else o_.outcome = RpcObservation::Outcome::kTransport;
  }
  void throttled() { o_.outcome = RpcObservation::Outcome::kThrottled; }
  void rpc_error() { o_.outcome = RpcObservation::Outcome::kRpcError; }

 private:
  const RpcObserver& observer_;
  std::string method_;
  RpcObservation o_;
  std::chrono::steady_clock::time_point began_;
  int uncaught_ = std::uncaught_exceptions();
  bool failed_ = false;
};

namespace {

std::string_view batch_method(const std::vector<RpcRequest>& requests) {
  for (const auto& r : requests)
    if (r.method != requests.front().method) return "batch";
  return requests.front().method;
}

}  // namespace

void HttpRpcClient::observe(RpcObserver observer) { impl_->observer = std::move(observer); }
double HttpRpcClient::current_rate() const { return impl_->bucket.rate(); }

Task<std::string> HttpRpcClient::call(RpcRequest request) {
  Observed observed(impl_->observer, impl_->redacted, request.method, 1);
  try {
    std::string result = co_await call_observed(std::move(request), observed);
    co_return result;
  } catch (const RpcError& e) {
    observed.failed(e);
    throw;
  }
}

Task<std::vector<RpcReply>> HttpRpcClient::batch(std::vector<RpcRequest> requests) {
  if (requests.empty()) co_return std::vector<RpcReply>{};
  Observed observed(impl_->observer, impl_->redacted, batch_method(requests), requests.size());
  try {
    std::vector<RpcReply> replies = co_await batch_observed(std::move(requests), observed);
    co_return replies;
  } catch (const RpcError& e) {
    observed.failed(e);
    throw;
  }
}

Task<std::string> HttpRpcClient::call_observed(RpcRequest request, Observed& observed) {
  std::uint64_t id = impl_->next_id++;
  const std::string& method = request.method;
  std::string payload = encode_request(request, id);
  std::string body = co_await impl_->post(std::move(payload), 1);
  auto replies = parse_replies(body);
  if (!replies.ok()) throw RpcError(RpcError::Kind::kMalformed, impl_->redacted + ": " + method + ": " + replies.error().message);
  if (replies->size() != 1 || (*replies)[0].id != id)
    throw RpcError(RpcError::Kind::kMalformed, impl_->redacted + ": " + method + ": reply id does not match the request");
  RpcReply& r = (*replies)[0];
  if (r.error_code) {
    if (says_rate_limited(*r.error_code, r.error_message)) {
      impl_->throttled();
      observed.throttled();
    }
    throw RpcError(RpcError::Kind::kRpc, impl_->redacted + ": " + method + ": " + r.error_message, *r.error_code);
  }
  impl_->served();
  co_return std::move(r.result);
}

Task<std::vector<RpcReply>> HttpRpcClient::batch_observed(std::vector<RpcRequest> requests, Observed& observed) {
  std::uint64_t first = impl_->next_id;
  impl_->next_id += requests.size();
  std::string payload = encode_batch(requests, first);
  std::string body = co_await impl_->post(std::move(payload), requests.size());
  auto replies = parse_replies(body);
  if (!replies.ok()) throw RpcError(RpcError::Kind::kMalformed, impl_->redacted + ": batch: " + replies.error().message);
  // Servers may answer a batch in any order; put replies back in request order.
  std::vector<RpcReply> ordered(requests.size());
  std::vector<bool> seen(requests.size(), false);
  for (auto& r : *replies) {
    if (r.id < first || r.id >= first + requests.size() || seen[r.id - first])
      throw RpcError(RpcError::Kind::kMalformed, impl_->redacted + ": batch: unexpected reply id " + std::to_string(r.id));
    seen[r.id - first] = true;
    ordered[r.id - first] = std::move(r);
  }
  for (std::size_t i = 0; i < seen.size(); ++i)
    if (!seen[i]) throw RpcError(RpcError::Kind::kMalformed, impl_->redacted + ": batch: no reply for " + requests[i].method);
  bool limited = false, erred = false;
  for (const auto& r : ordered) {
    limited |= r.error_code && says_rate_limited(*r.error_code, r.error_message);
    erred |= r.error_code.has_value();
  }
  if (limited) {
    impl_->throttled();
    observed.throttled();
  } else {
    impl_->served(requests.size());
    if (erred) observed.rpc_error();
  }
  co_return ordered;
}

}  // namespace chainidx::ingest
