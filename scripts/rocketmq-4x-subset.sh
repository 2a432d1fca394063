#!/usr/bin/env bash
# The TCP compatibility subset against Apache RocketMQ 4.9.7 (the newest 4.x servers on Maven
# Central): round trip with tags/keys/properties, tag filters, ordering, delay levels, retry →
# DLQ, ACL 1.0, instanceId namespaces, coalesced concurrent creates (batch sends, own receipts)
# and the local broker limits (4.x refuses properties over
# Short.MAX_VALUE like 5.x; a 4.x broker has no timers and delivers a past rocketmq-deliver-at
# at once, as 5.x does), through tests/tcp_transport.rs. Starts its own plain
# and authenticating 4.x pairs on 127.0.0.1 (own state dir and ports, so it runs beside the 5.x
# pairs of scripts/test.sh) and stops them on exit.
#
#   scripts/rocketmq-4x-subset.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export RMQ_SERVER=java4
export RMQ_STATE_DIR="${TMPDIR:-/tmp}/rocketmq-local-4x-$(id -u)"
scripts/rocketmq-local.sh install
trap 'scripts/rocketmq-local.sh stop >/dev/null 2>&1 || true' EXIT
scripts/rocketmq-local.sh start --namesrv-port 41876 --broker-port 42911
scripts/rocketmq-local.sh start-acl --namesrv-port 43876 --broker-port 44911
set -a
# shellcheck disable=SC1090
eval "$(scripts/rocketmq-local.sh env)"
set +a
cargo test --locked --test tcp_transport "$@" -- \
  round_trip_1000_messages_intact tag_filtering_with_spaced_or_lists \
  sharding_keys_keep_order_with_consume_orderly delay_level_and_deliver_after_are_honoured \
  every_third_nacked_is_redelivered_once_then_never_again exhausted_retries_land_in_the_dlq \
  acl_right_keys_work_wrong_secret_is_a_clear_error instance_ids_with_the_same_topic_never_cross \
  broker_limits_are_checked_locally_with_the_brokers_numbers \
  concurrent_creates_are_coalesced_and_keep_their_own_receipts
