#pragma once

#include <boost/asio/ssl/context.hpp>

namespace chainidx::ingest {

/// The client TLS context: system CA store, peer verification on, TLS 1.2 or newer.
/// Built once; shared by every connection (thread-safe after construction).
boost::asio::ssl::context& client_tls_context();

}  // namespace chainidx::ingest
