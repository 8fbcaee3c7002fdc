#include "sinks/kafka_sink.hpp"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <utility>

#include "sinks/kafka_message.hpp"

namespace chainidx::sinks {
namespace {

// librdkafka's own log lines, into ours (one line per event, no secrets: broker addresses only).
void on_log(const rd_kafka_t*, int level, const char* facility, const char* message) {
  auto lvl = level <= 3 ? spdlog::level::err : level == 4 ? spdlog::level::warn : spdlog::level::info;
  spdlog::log(lvl, "event=kafka_client facility={} message=\"{}\"", facility, message);
}

// An error object, read and destroyed at once.
struct TxnError {
  rd_kafka_resp_err_t code;
  std::string message;
  bool retriable;
  bool requires_abort;
  bool fatal;
};

std::optional<TxnError> take(rd_kafka_error_t* e) {
  if (!e) return std::nullopt;
  TxnError out{rd_kafka_error_code(e), rd_kafka_error_string(e), rd_kafka_error_is_retriable(e) != 0,
               rd_kafka_error_txn_requires_abort(e) != 0, rd_kafka_error_is_fatal(e) != 0};
  rd_kafka_error_destroy(e);
  return out;
}

// Codes by which librdkafka or the broker say a newer producer with our transactional.id exists.
bool is_fencing(rd_kafka_resp_err_t code) {
  return code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
         code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

}  // namespace

// The producer's life, as librdkafka's transactional contract prescribes:
//
//   (no handle) --create--> (handle, not initialised) --init_transactions--> ready
//   ready --begin, produce--> open --commit ok--> ready
//   open --commit: retriable (timed out)--> committing: the same batch resumes the commit
//   open/committing --commit: abortable--> abort_needed --abort ok--> ready: the batch is sent
//                                          again, in a new transaction
//   any --fatal, fenced--> fenced: every later write throws Kind::kFenced; never recreated,
//                          because a new producer would fence the instance that replaced us
//   any --fatal, other--> (no handle): rebuilt at the next write; nobody newer holds our
//                          transactional.id (we would be fenced), so the rebuild fences no peer
//
// Every librdkafka call goes through ready_producer(), so no call ever sees a null handle.
// Delivery reports carry no per-message pointer: the callback's opaque is this Impl, which
// outlives the handle.
struct KafkaSink::Impl {
  enum class Txn { kNone, kOpen, kCommitting, kAbortNeeded };
  struct Pending {
    std::uint64_t first = 0, last = 0;
    schema::Hash32 last_hash;
    bool same_blocks(const Pending& o) const { return first == o.first && last == o.last && last_hash == o.last_hash; }
  };

  KafkaSinkConfig config;
  rd_kafka_t* rk = nullptr;
  bool initialised = false;
  bool fenced = false;
  std::string fenced_message;
  Txn txn = Txn::kNone;
  Pending pending;
  std::vector<std::string> topics;  // indexed by Topic (kEvents + contract for events)
  EventTopics events;
  std::string chain_id_header;
  std::atomic<std::uint64_t> acknowledged{0};
  std::atomic<std::uint64_t> delivery_failures{0};
  // Messages handed to the producer, less those a destroyed producer took with it: with the two
  // counts above, the queue's depth, readable from any thread.
  std::atomic<std::uint64_t> enqueued{0};
  // The newest block a committed transaction holds in <chain>.blocks: blocks up to it are not
  // published again (after a crash between Kafka's commit and Postgres').
  std::optional<std::pair<std::uint64_t, schema::Hash32>> published_tip;

  std::string transactional_id() const {
    return "chainidx-" + config.chain_name + (config.replay_job.empty() ? "" : "-replay-" + config.replay_job);
  }
  int txn_timeout_ms() const { return config.transaction_timeout_ms; }
  // How long one transactional call may block before it returns a retriable timeout and the
  // caller logs, waits and calls again (resuming it). librdkafka 2.0's commit with -1 (the
  // transaction's remaining time) was seen blocking for good while the coordinator was away,
  // so the calls are bounded and resumed instead.
  int call_timeout_ms() const { return std::min(txn_timeout_ms(), 10000); }

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    if (m->err) self->delivery_failures++;
    else self->acknowledged++;
  }

  void create() {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto set = [&](const char* k, const std::string& v) {
      if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw SinkError(std::string("kafka config ") + k + ": " + err, SinkError::Kind::kRefused);
      }
    };
    set("bootstrap.servers", config.brokers);
    set("enable.idempotence", "true");
    set("acks", "all");
    set("linger.ms", "5");
    set("compression.codec", config.compression);
    // A message may wait for the broker as long as its transaction may stay open.
    set("message.timeout.ms", std::to_string(txn_timeout_ms()));
    set("log_level", "4");
    // One transaction per batch: a batch's messages become visible to read_committed consumers
    // together or not at all, and a restarted indexer fences the producer of the old one.
    set("transactional.id", transactional_id());
    set("transaction.timeout.ms", std::to_string(txn_timeout_ms()));
    for (const auto& [k, v] : config.client_properties) set(k.c_str(), v);
    rd_kafka_conf_set_dr_msg_cb(conf, &Impl::on_delivery);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_opaque(conf, this);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) throw SinkError(std::string("kafka producer: ") + err, SinkError::Kind::kRefused);
    initialised = false;
    txn = Txn::kNone;
  }

  void destroy() {
    if (!rk) return;
    // Whatever is queued belongs to a transaction that will never commit.
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy(rk);
    rk = nullptr;
    enqueued = acknowledged.load() + delivery_failures.load();  // what was left went with the producer
    initialised = false;
    txn = Txn::kNone;
  }

  [[noreturn]] void become_fenced(const std::string& what, const std::string& detail) {
    fenced = true;
    fenced_message = "kafka " + what + ": producer fenced: another instance with transactional.id " + transactional_id() +
                     " took over (" + detail + "); this instance publishes nothing more and stops";
    destroy();
    throw SinkError(fenced_message, SinkError::Kind::kFenced);
  }

  // A fatal producer error: fenced (stop for good) or anything else (rebuild next time).
  [[noreturn]] void fatal(const std::string& what, const TxnError& e) {
    char reason[512] = "";
    rd_kafka_resp_err_t code = rk ? rd_kafka_fatal_error(rk, reason, sizeof reason) : RD_KAFKA_RESP_ERR_NO_ERROR;
    std::string detail = e.message + (reason[0] ? std::string("; ") + reason : "");
    if (is_fencing(e.code) || is_fencing(code)) become_fenced(what, detail);
    destroy();
    throw SinkError("kafka " + what + ": fatal producer error (" + detail + "); the producer is rebuilt and the batch sent again");
  }

  // A handle that has run init_transactions, or SinkError. Retriable init errors (broker not
  // reachable yet) keep the handle: the next call resumes the same init, as documented.
  rd_kafka_t* ready_producer() {
    if (fenced) throw SinkError(fenced_message, SinkError::Kind::kFenced);
    if (!rk) create();
    if (initialised) return rk;
    auto e = take(rd_kafka_init_transactions(rk, call_timeout_ms()));
    if (!e) {
      initialised = true;
      return rk;
    }
    if (e->fatal || is_fencing(e->code)) fatal("init transactions", *e);
    if (e->retriable)
      throw SinkError("kafka init transactions at " + config.brokers + ": " + e->message + " (waiting for the broker)");
    // Not retriable, not fatal (e.g. a state error): start from a new handle.
    destroy();
    throw SinkError("kafka init transactions at " + config.brokers + ": " + e->message + "; the producer is rebuilt");
  }

  // Ends an open or failed transaction so that a new one can begin. SinkError when the abort
  // could not finish yet (it resumes at the next call).
  void abort_open(const char* reason = "the batch is sent again in a new transaction") {
    if (txn == Txn::kNone) return;
    auto e = take(rd_kafka_abort_transaction(rk, call_timeout_ms()));
    if (!e) {
      spdlog::info("event=kafka_aborted blocks={}-{} reason=\"{}\"", pending.first, pending.last, reason);
      txn = Txn::kNone;
      return;
    }
    if (e->fatal || is_fencing(e->code)) fatal("abort transaction", *e);
    if (e->retriable) {
      txn = Txn::kAbortNeeded;
      throw SinkError("kafka abort transaction: " + e->message + " (retried)");
    }
    destroy();
    throw SinkError("kafka abort transaction: " + e->message + "; the producer is rebuilt");
  }

  void produce_batch(std::span<const schema::Block> blocks) {
    if (auto e = take(rd_kafka_begin_transaction(rk))) {
      if (e->fatal || is_fencing(e->code)) fatal("begin transaction", *e);
      destroy();
      throw SinkError("kafka begin transaction: " + e->message + "; the producer is rebuilt");
    }
    txn = Txn::kOpen;
    std::uint64_t produced = 0;
    for (const auto& block : blocks) {
      for (auto& m : encode_block(block, config.chain_id, config.chain_name, &events, config.raw_logs)) {
        const std::string& topic = topics[static_cast<std::size_t>(m.topic) + m.contract];
        for (;;) {
          // A replayed message carries one header more, naming its replay job.
          const std::string& replay = config.replay_job;
          rd_kafka_resp_err_t e =
              replay.empty()
                  ? rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                                      RD_KAFKA_V_KEY(m.key.data(), m.key.size()), RD_KAFKA_V_VALUE(m.value.data(), m.value.size()),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_HEADER("chain_id", chain_id_header.data(), static_cast<ssize_t>(chain_id_header.size())),
                                      RD_KAFKA_V_END)
                  : rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                                      RD_KAFKA_V_KEY(m.key.data(), m.key.size()), RD_KAFKA_V_VALUE(m.value.data(), m.value.size()),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_HEADER("chain_id", chain_id_header.data(), static_cast<ssize_t>(chain_id_header.size())),
                                      RD_KAFKA_V_HEADER("chainidx_replay", replay.data(), static_cast<ssize_t>(replay.size())),
                                      RD_KAFKA_V_END);
          if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
          if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 50);  // the broker is slow or away: wait for room, or for the messages to time out
            continue;
          }
          if (e == RD_KAFKA_RESP_ERR__FATAL) fatal("produce", {e, rd_kafka_err2str(e), false, false, true});
          // The transaction is in an abortable state (e.g. an earlier message failed).
          txn = Txn::kAbortNeeded;
          throw SinkError(std::string("kafka produce: ") + rd_kafka_err2str(e) + " (the transaction is aborted and the batch sent again)");
        }
        ++produced;
        ++enqueued;
      }
    }
    pending = {blocks.front().number, blocks.back().number, blocks.back().hash};
    spdlog::debug("event=kafka_produced blocks={}-{} messages={}", pending.first, pending.last, produced);
    txn = Txn::kCommitting;
  }

  std::span<const schema::Block> unpublished(std::span<const schema::Block> blocks) const;

  void commit() {
    auto e = take(rd_kafka_commit_transaction(rk, call_timeout_ms()));
    if (!e) {
      txn = Txn::kNone;
      published_tip = std::make_pair(pending.last, pending.last_hash);
      return;
    }
    if (e->fatal || is_fencing(e->code)) fatal("commit transaction", *e);
    if (e->requires_abort) {
      txn = Txn::kAbortNeeded;
      std::string problem = "kafka commit transaction of blocks " + std::to_string(pending.first) + "-" +
                            std::to_string(pending.last) + ": " + e->message;
      abort_open();  // may throw: then the abort resumes at the next attempt
      throw SinkError(problem + " (aborted; the batch is sent again in a new transaction)");
    }
    if (e->retriable) {
      // Still committing in the background: the next attempt with this batch resumes it.
      throw SinkError("kafka commit transaction of blocks " + std::to_string(pending.first) + "-" + std::to_string(pending.last) +
                      ": " + e->message + " (the commit is resumed)");
    }
    destroy();
    throw SinkError("kafka commit transaction: " + e->message + "; the producer is rebuilt and the batch sent again");
  }
};

KafkaSink::KafkaSink(KafkaSinkConfig config) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  const std::string& prefix = impl_->config.topic_prefix.empty() ? impl_->config.chain_name : impl_->config.topic_prefix;
  impl_->events = EventTopics(impl_->config.event_tables, impl_->config.topic_per_event);
  impl_->topics = topic_names(prefix, impl_->events);
  impl_->chain_id_header = std::to_string(impl_->config.chain_id);
  impl_->create();
}

KafkaSink::~KafkaSink() { impl_->destroy(); }

void KafkaSink::start() { impl_->ready_producer(); }

std::uint64_t KafkaSink::acknowledged() const { return impl_->acknowledged.load(); }
std::uint64_t KafkaSink::queue_depth() const {
  const std::uint64_t in = impl_->enqueued.load(), out = impl_->acknowledged.load() + impl_->delivery_failures.load();
  return in > out ? in - out : 0;
}
std::uint64_t KafkaSink::delivery_failures() const { return impl_->delivery_failures.load(); }

namespace {

// Which of `names` the cluster has, by a metadata request for each (which also makes a broker
// with topic auto-creation create it).
std::vector<std::string> missing_topics(rd_kafka_t* rk, const std::vector<std::string>& names) {
  std::vector<std::string> missing;
  for (std::size_t i = 0; i < names.size(); ++i) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, names[i].c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    bool present = err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                   md->topics[0].partition_cnt > 0;
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (!present) missing.push_back(names[i]);
  }
  return missing;
}

}  // namespace

void KafkaSink::ensure_topics() {
  if (!impl_->rk) impl_->create();
  rd_kafka_t* rk = impl_->rk;
  char err[512];
  // Ask first: a cluster that has the topics needs no Admin call (and the development broker,
  // librdkafka's mock cluster, has no CreateTopics API at all).
  std::vector<std::string> missing;
  {
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 1, nullptr, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw SinkError("kafka: no metadata from " + impl_->config.brokers + " within 10 s (is the broker up?)");
    for (const auto& t : impl_->topics) {
      bool found = false;
      for (int i = 0; i < md->topic_cnt; ++i) found |= t == md->topics[i].topic;
      if (!found) missing.push_back(t);
    }
    rd_kafka_metadata_destroy(md);
  }
  if (missing.empty()) return;

  std::vector<rd_kafka_NewTopic_t*> new_topics;
  for (const auto& name : missing) {
    auto* nt = rd_kafka_NewTopic_new(name.c_str(), static_cast<int>(impl_->config.partitions),
                                     static_cast<int>(impl_->config.replication_factor), err, sizeof err);
    if (!nt) {
      for (auto* t : new_topics) rd_kafka_NewTopic_destroy(t);
      throw SinkError("kafka topic " + name + ": " + err);
    }
    new_topics.push_back(nt);
  }
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  // Short: a cluster without a controller to ask (the dev broker) should not hold up the start;
  // a real cluster that is slow here fails this attempt and the start is retried.
  rd_kafka_AdminOptions_set_request_timeout(options, 5000, err, sizeof err);
  rd_kafka_AdminOptions_set_operation_timeout(options, 5000, err, sizeof err);
  rd_kafka_CreateTopics(rk, new_topics.data(), new_topics.size(), options, queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, 10000);
  std::string problem;
  if (!ev) {
    problem = "no answer to CreateTopics within 10 s";
  } else if (rd_kafka_event_error(ev)) {
    problem = rd_kafka_event_error_string(ev);
  } else {
    const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &n);
    for (size_t i = 0; i < n; ++i) {
      auto code = rd_kafka_topic_result_error(results[i]);
      if (code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        problem += std::string(rd_kafka_topic_result_name(results[i])) + ": " + rd_kafka_err2str(code) + "; ";
    }
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_queue_destroy(queue);
  for (auto* t : new_topics) rd_kafka_NewTopic_destroy(t);
  if (problem.empty()) return;

  // Last resort: a broker with auto-creation makes them on a metadata request (with its default
  // partition count, which the log says).
  auto still = missing_topics(rk, impl_->topics);
  if (!still.empty()) {
    std::string list;
    for (auto& t : still) list += (list.empty() ? "" : ", ") + t;
    throw SinkError("kafka: topics " + list + " do not exist and could not be created (" + problem +
                    "); create them with " + std::to_string(impl_->config.partitions) + " partitions, or let the indexer's "
                    "principal create topics");
  }
  // The development broker (librdkafka's mock cluster) has no CreateTopics API but creates
  // topics on a metadata request, with its own partition count: go on with those.
  spdlog::warn("event=kafka_topics_auto_created topics={} reason=\"CreateTopics failed ({}); the broker created them on "
               "first use with its default partition count\"", missing.size(), problem);
}

std::span<const schema::Block> KafkaSink::Impl::unpublished(std::span<const schema::Block> blocks) const {
  // Leave out what an earlier run committed to Kafka but not to Postgres before it died (a
  // replay publishes what it is given).
  const Impl& s = *this;
  std::size_t first = 0;
  if (s.published_tip && s.config.replay_job.empty()) {
    while (first < blocks.size() && blocks[first].number <= s.published_tip->first) {
      if (blocks[first].number == s.published_tip->first && blocks[first].hash != s.published_tip->second) {
        spdlog::warn("event=kafka_tip_not_canonical block={} published_hash={} canonical_hash={}", blocks[first].number,
                     schema::to_hex(s.published_tip->second), schema::to_hex(blocks[first].hash));
        first = 0;
        break;
      }
      ++first;
    }
    if (first > 0)
      spdlog::info("event=kafka_skip_published blocks={}-{} reason=\"committed to Kafka by an earlier run\"",
                   blocks.front().number, blocks[first - 1].number);
  }
  return blocks.subspan(first);
}

void KafkaSink::write(std::span<const schema::Block> blocks) {
  Impl& s = *impl_;
  auto batch = s.unpublished(blocks);
  if (batch.empty()) return;
  s.ready_producer();
  Impl::Pending identity{batch.front().number, batch.back().number, batch.back().hash};
  if (s.txn == Impl::Txn::kCommitting && s.pending.same_blocks(identity)) {
    spdlog::info("event=kafka_commit_resumed blocks={}-{}", batch.front().number, batch.back().number);
  } else {
    s.abort_open();  // a transaction left by an earlier failed attempt (or another batch)
    s.produce_batch(batch);
  }
  s.commit();
}

void KafkaSink::prepare(std::span<const schema::Block> blocks) {
  Impl& s = *impl_;
  auto batch = s.unpublished(blocks);
  s.ready_producer();
  s.abort_open();
  if (batch.empty()) return;
  s.produce_batch(batch);
  // Until the broker has every message: what is left for commit_prepared() is the commit. A
  // message that failed makes the commit fail (and the batch go again), so the flush's own
  // answer adds nothing.
  rd_kafka_flush(s.rk, s.call_timeout_ms());
}

void KafkaSink::commit_prepared() {
  Impl& s = *impl_;
  if (s.txn != Impl::Txn::kCommitting) return;  // nothing was left to publish
  s.commit();
}

void KafkaSink::abort_prepared() {
  Impl& s = *impl_;
  if (s.rk) s.abort_open("written ahead of its confirmation, and not used");
}

namespace {

// The newest block in a committed transaction on any of `topics`, with one consumer: each
// partition's tail is read with read_committed, widening the window backwards until a message
// naming its block turns up.
std::optional<std::pair<std::uint64_t, schema::Hash32>> read_published_tip(const KafkaSinkConfig& config,
                                                                           const std::vector<std::string>& topics) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (auto [k, v] : {std::pair<const char*, std::string>{"bootstrap.servers", config.brokers},
                      {"group.id", "chainidx-tip-" + config.chain_name},
                      {"enable.auto.commit", "false"},
                      {"isolation.level", "read_committed"},
                      {"enable.partition.eof", "true"},
                      {"log_level", "4"}}) {
    if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      throw SinkError(std::string("kafka consumer config ") + k + ": " + err);
    }
  }
  for (const auto& [k, v] : config.client_properties) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      throw SinkError("kafka consumer config " + k + ": " + err);
    }
  }
  rd_kafka_conf_set_log_cb(conf, on_log);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) throw SinkError(std::string("kafka consumer: ") + err);
  rd_kafka_poll_set_consumer(rk);
  std::optional<std::pair<std::uint64_t, schema::Hash32>> tip;
  std::string problem;

  for (const std::string& topic : topics) {
    if (!problem.empty()) break;
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    int partitions = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1)
      partitions = md->topics[0].partition_cnt;
    else
      problem = "no metadata for " + topic;
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);

    for (int p = 0; p < partitions && problem.empty(); ++p) {
      std::int64_t low = 0, high = 0;
      if (auto e = rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 10000)) {
        problem = std::string("watermarks: ") + rd_kafka_err2str(e);
        break;
      }
      bool found = false;
      for (std::int64_t window = 16; high > low && !found; window *= 4) {
        std::int64_t start = std::max(low, high - window);
        rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = start;
        rd_kafka_assign(rk, list);
        rd_kafka_topic_partition_list_destroy(list);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
        for (;;) {
          if (std::chrono::steady_clock::now() > deadline) {
            problem = "timed out reading the tail of " + topic;
            break;
          }
          rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 500);
          if (!m) continue;
          bool eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
          if (!m->err) {
            std::string_view value(static_cast<const char*>(m->payload), m->len);
            auto n_at = value.find("\"block_number\":");
            auto h_at = value.find("\"block_hash\":\"");
            schema::Hash32 hash;
            if (n_at != std::string_view::npos && h_at != std::string_view::npos &&
                schema::parse_fixed(value.substr(h_at + 14, 66), hash)) {
              std::uint64_t number = std::strtoull(value.data() + n_at + 15, nullptr, 10);
              if (!tip || number > tip->first) tip = std::make_pair(number, hash);
              found = true;
            }
          } else if (!eof) {
            problem = std::string("reading ") + topic + ": " + rd_kafka_err2str(m->err);
          }
          rd_kafka_message_destroy(m);
          if (eof || !problem.empty()) break;
        }
        if (!problem.empty() || start == low) break;
      }
    }
  }
  rd_kafka_assign(rk, nullptr);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (!problem.empty()) throw SinkError("kafka: " + problem);
  return tip;
}

}  // namespace

void KafkaSink::load_published_tip() {
  const KafkaSinkConfig& c = impl_->config;
  const auto& topics = impl_->topics;
  // The topics every published block has a message in: blocks; for sparse blocks, their logs;
  // without raw logs, their events or undecodable logs.
  std::vector<std::string> read;
  if (!c.sparse_blocks)
    read = {topics[static_cast<int>(Topic::kBlocks)]};
  else if (c.raw_logs)
    read = {topics[static_cast<int>(Topic::kLogs)]};
  else
    read.assign(topics.begin() + static_cast<int>(Topic::kUndecodable), topics.end());
  impl_->published_tip = read_published_tip(c, read);
  if (impl_->published_tip)
    spdlog::info("event=kafka_published_tip block={} hash={}", impl_->published_tip->first,
                 schema::to_hex(impl_->published_tip->second));
}

const char* kafka_property_owner(std::string_view name) {
  static const std::vector<std::pair<std::string_view, const char*>> owned = {
      {"bootstrap.servers", "use kafka.brokers"},
      {"metadata.broker.list", "use kafka.brokers"},
      {"compression.codec", "use kafka.compression"},
      {"compression.type", "use kafka.compression"},
      {"transaction.timeout.ms", "use kafka.transaction_timeout_seconds"},
      {"message.timeout.ms", "use kafka.transaction_timeout_seconds (a message waits as long as its transaction)"},
      {"delivery.timeout.ms", "use kafka.transaction_timeout_seconds (a message waits as long as its transaction)"},
      {"transactional.id", "remove it: the id is chainidx-<chain>, so that a new instance fences the old one"},
      {"enable.idempotence", "remove it: exactly-once publishing needs the idempotent producer"},
      {"acks", "remove it: exactly-once publishing needs acks=all"},
      {"request.required.acks", "remove it: exactly-once publishing needs acks=all"},
      {"isolation.level", "remove it: the published tip is read with read_committed"},
      {"group.id", "remove it: chainidx consumes nothing but its own published tip"},
      {"enable.auto.commit", "remove it: chainidx consumes nothing but its own published tip"},
      {"security.protocol", "use kafka.security_protocol"},
      {"sasl.mechanism", "use kafka.sasl_mechanism"},
      {"sasl.mechanisms", "use kafka.sasl_mechanism"},
      {"sasl.username", "use kafka.sasl_username"},
      {"sasl.password", "use kafka.sasl_password"},
      {"ssl.ca.location", "use kafka.ssl_ca_file"},
      {"ssl.certificate.location", "use kafka.ssl_certificate_file"},
      {"ssl.key.location", "use kafka.ssl_key_file"},
      {"ssl.key.password", "use kafka.ssl_key_password"},
  };
  for (const auto& [k, why] : owned)
    if (k == name) return why;
  return nullptr;
}

std::optional<std::string> check_kafka_property(const std::string& name, const std::string& value) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const bool ok = rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) == RD_KAFKA_CONF_OK;
  rd_kafka_conf_destroy(conf);
  if (ok) return std::nullopt;
  return std::string(err);
}

}  // namespace chainidx::sinks
