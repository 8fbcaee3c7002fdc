#pragma once

#include <boost/asio/awaitable.hpp>

namespace chainidx::ingest {

/// A coroutine on Asio's executor: the unit of every network operation.
template <class T>
using Task = boost::asio::awaitable<T>;

}  // namespace chainidx::ingest
