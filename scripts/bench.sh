#!/usr/bin/env bash
# bench.sh: build pushbridge and pushload, start `pushbridge serve` (embedded
# NATS in a temporary store, pprof on a loopback debug listener) and run the
# load tool's standard set at moderate sizes, then the two baselines with the
# same clients. JSON results go to $OUT. Everything listens on and talks to
# 127.0.0.1 only; every step is bounded in time.
#
#   scripts/bench.sh                 # moderate sizes (about 6 minutes)
#   CONNS=10000 CHANNELS=5000 RATE=8000 scripts/bench.sh
#
# Knobs (environment): OUT, CONNS, CHANNELS, RATE, DURATION, IDLE_CONNS,
# RAMP_START, RAMP_STEP, RAMP_MAX, STEP, P99_BOUND, RECONNECT, BEHIND,
# SLOW, SLOW_CONNS, SLOW_CHANNELS, SLOW_RATE, SLOW_PAD, SLOW_DURATION,
# HTTP_RATE, JS_DURATION, SUPERSET_PATH (auto|0: the Redis → ingest path,
# run when redis-server exists and the gateway mirrors Redis), PORT_BASE,
# TARGETS (1|0: the issue-5 target shapes), LAT_CONNS, LAT_RATE (default 20 %
# of the ramp's best), REPLAY_CONNS, STORM_CONNS.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
CONNS=${CONNS:-5000}
CHANNELS=${CHANNELS:-2500}
RATE=${RATE:-8000}
DURATION=${DURATION:-10s}
IDLE_CONNS=${IDLE_CONNS:-10000}
RAMP_START=${RAMP_START:-4000}
RAMP_STEP=${RAMP_STEP:-4000}
RAMP_MAX=${RAMP_MAX:-80000}
STEP=${STEP:-3s}
P99_BOUND=${P99_BOUND:-50ms}
RECONNECT=${RECONNECT:-$CONNS}
BEHIND=${BEHIND:-50}
SLOW=${SLOW:-1000}
SLOW_CONNS=${SLOW_CONNS:-1000}
SLOW_CHANNELS=${SLOW_CHANNELS:-50}
SLOW_RATE=${SLOW_RATE:-2000}
SLOW_PAD=${SLOW_PAD:-4096}
SLOW_DURATION=${SLOW_DURATION:-60s}
HTTP_RATE=${HTTP_RATE:-2000}
JS_DURATION=${JS_DURATION:-10s}
SUPERSET_PATH=${SUPERSET_PATH:-auto}
PORT_BASE=${PORT_BASE:-18000}
TARGETS=${TARGETS:-1}
LAT_CONNS=${LAT_CONNS:-10000}
LAT_RATE=${LAT_RATE:-}
REPLAY_CONNS=${REPLAY_CONNS:-1000}
STORM_CONNS=${STORM_CONNS:-10000}

PB_PORT=$((PORT_BASE + 80))
NATS_PORT=$((PORT_BASE + 222))
DEBUG_PORT=$((PORT_BASE + 60))
BASE_PORT=$((PORT_BASE + 90))
REDIS_PORT=$((PORT_BASE + 379))
STEP_TIMEOUT=${STEP_TIMEOUT:-900}

mkdir -p "$OUT"
BIN=$(mktemp -d /tmp/pushbench-bin.XXXXXX)
WORK=$(mktemp -d /tmp/pushbench-work.XXXXXX)
JWT_SECRET=$(head -c 36 /dev/urandom | base64 | tr -d '/+=' | head -c 48)
export JWT_SECRET
PIDS=()

log() { printf '\n### %s\n' "$*" >&2; }

cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$BIN" "$WORK"
}
trap cleanup EXIT

# Raise the open-files limit as far as this shell may (children inherit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "open-files limit $(ulimit -n) (each process needs one per connection)"

log "build"
(cd "$ROOT" && go build -o "$BIN/pushbridge" ./cmd/pushbridge && go build -o "$BIN/pushload" ./cmd/pushload)

wait_ready() { # url timeout_s
	local deadline=$((SECONDS + $2))
	until curl -fsS -o /dev/null "$1"; do
		if ((SECONDS > deadline)); then
			echo "not ready: $1" >&2
			return 1
		fi
		sleep 0.2
	done
}

PB_PID=""
start_pushbridge() { # extra env assignments...
	local store
	store=$(mktemp -d "$WORK/store.XXXXXX")
	env PORT="$PB_PORT" PUSHBRIDGE_HOST=127.0.0.1 PUSHBRIDGE_NATS_STORE_DIR="$store" \
		PUSHBRIDGE_NATS_LISTEN="127.0.0.1:$NATS_PORT" PUSHBRIDGE_DEBUG_LISTEN="127.0.0.1:$DEBUG_PORT" \
		STATSD_HOST=127.0.0.1 LOG_LEVEL=warn "$@" \
		"$BIN/pushbridge" serve >>"$OUT/pushbridge.log" 2>&1 &
	PB_PID=$!
	PIDS+=("$PB_PID")
	wait_ready "http://127.0.0.1:$PB_PORT/ready" 60
	log "pushbridge pid $PB_PID on 127.0.0.1:$PB_PORT (nats 127.0.0.1:$NATS_PORT, pprof http://127.0.0.1:$DEBUG_PORT/debug/pprof/)"
}

stop_pid() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

load() { # name scenario flags...
	local name=$1
	shift
	log "pushload $* -> $name.json"
	if [[ $name == fanout-* && $name != fanout-baseline* ]]; then
		# A CPU profile of the gateway during the measured seconds.
		(sleep 3 && curl -fsS -o "$OUT/$name.pprof" "http://127.0.0.1:$DEBUG_PORT/debug/pprof/profile?seconds=6" 2>/dev/null) &
	fi
	timeout "$STEP_TIMEOUT" "$BIN/pushload" "$@" --out "$OUT/$name.json" 2>>"$OUT/pushload.log" | tee "$OUT/$name.txt" || true
}

PB=(--url "ws://127.0.0.1:$PB_PORT/")
NATS=(--publish nats --nats-url "nats://127.0.0.1:$NATS_PORT")
SHAPE=(--conns "$CONNS" --channels "$CHANNELS")

# 1. Idle memory, on a fresh gateway so that earlier runs' heap does not hide it.
start_pushbridge
load idle idle "${PB[@]}" --publish none --conns "$IDLE_CONNS" --channels $((IDLE_CONNS / 2)) \
	--settle 3s --duration 5s --server-pid "$PB_PID"

# 2-6. Fan-out (NATS and HTTP publishing), ramp, reconnect storm, slow clients.
load fanout-nats fanout "${PB[@]}" "${NATS[@]}" "${SHAPE[@]}" --rate "$RATE" --duration "$DURATION" --server-pid "$PB_PID"
load fanout-http fanout "${PB[@]}" --publish http "${SHAPE[@]}" --rate "$HTTP_RATE" --duration "$DURATION" --server-pid "$PB_PID"
load ramp-pushbridge ramp "${PB[@]}" "${NATS[@]}" "${SHAPE[@]}" --rate-start "$RAMP_START" --rate-step "$RAMP_STEP" \
	--rate-max "$RAMP_MAX" --step-duration "$STEP" --p99-bound "$P99_BOUND" --server-pid "$PB_PID"
load reconnect reconnect "${PB[@]}" "${NATS[@]}" "${SHAPE[@]}" --reconnect "$RECONNECT" --behind "$BEHIND" \
	--rate 20000 --rounds 2 --server-pid "$PB_PID"
load slow slow "${PB[@]}" "${NATS[@]}" --conns "$SLOW_CONNS" --channels "$SLOW_CHANNELS" --slow "$SLOW" \
	--rate "$SLOW_RATE" --pad "$SLOW_PAD" --duration "$SLOW_DURATION" --server-pid "$PB_PID"
stop_pid "$PB_PID"

# 6b. The issue-5 target shapes, on a fresh gateway: latency at 20 % of the
# sustained maximum (10,000 connections over 5,000 channels), replay of
# single reconnects 100 events behind (one at a time, p99 over 1,000), and a
# storm of 10,000 clients 50 events behind resuming at once.
if [[ $TARGETS != 0 ]]; then
	start_pushbridge
	lat_rate=$LAT_RATE
	if [[ -z $lat_rate ]] && command -v jq >/dev/null && [[ -f $OUT/ramp-pushbridge.json ]]; then
		lat_rate=$(jq -r '(.ramp.best_rate // 0) * 0.2 | floor' "$OUT/ramp-pushbridge.json")
	fi
	((${lat_rate:-0} >= 100)) || lat_rate=1000
	load latency fanout "${PB[@]}" "${NATS[@]}" --conns "$LAT_CONNS" --channels $((LAT_CONNS / 2)) --rate "$lat_rate" \
		--duration "$DURATION" --server-pid "$PB_PID"
	load replay reconnect "${PB[@]}" "${NATS[@]}" --conns "$REPLAY_CONNS" --channels "$REPLAY_CONNS" --reconnect "$REPLAY_CONNS" \
		--behind 100 --reconnect-concurrency 1 --rate 20000 --server-pid "$PB_PID"
	load storm reconnect "${PB[@]}" "${NATS[@]}" --conns "$STORM_CONNS" --channels $((STORM_CONNS / 2)) --reconnect "$STORM_CONNS" \
		--behind 50 --rate 20000 --server-pid "$PB_PID"
	stop_pid "$PB_PID"
fi

# 7. The Superset path: Flask-style XADDs -> Redis -> ingest -> JetStream -> WebSocket.
if [[ $SUPERSET_PATH != 0 ]] && command -v redis-server >/dev/null; then
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$OUT/redis.log" 2>&1 &
	PIDS+=("$!")
	sleep 0.5
	start_pushbridge REDIS_HOST=127.0.0.1 REDIS_PORT="$REDIS_PORT"
	REDIS=(--publish redis --redis-addr "127.0.0.1:$REDIS_PORT")
	# Does this gateway mirror Redis? (The ingest is a separate component.)
	if timeout 60 "$BIN/pushload" fanout "${PB[@]}" "${REDIS[@]}" --conns 10 --channels 5 --rate 50 --duration 1s \
		--drain 3s --quiet --out "$WORK/probe.json" >/dev/null 2>&1 && command -v jq >/dev/null &&
		[[ $(jq .delivery.received "$WORK/probe.json") -gt 0 ]]; then
		load fanout-superset fanout "${PB[@]}" "${REDIS[@]}" "${SHAPE[@]}" --rate "$RATE" --duration "$DURATION" --server-pid "$PB_PID"
		load ramp-superset ramp "${PB[@]}" "${REDIS[@]}" "${SHAPE[@]}" --rate-start "$RAMP_START" --rate-step "$RAMP_STEP" \
			--rate-max "$RAMP_MAX" --step-duration "$STEP" --p99-bound "$P99_BOUND" --server-pid "$PB_PID"
	else
		log "skipping the Superset path: this gateway does not deliver events XADDed to Redis (no ingest?)"
	fi
	stop_pid "$PB_PID"
fi

# 8. Baseline (a): bare gorilla/websocket server, same clients, same rates.
"$BIN/pushload" baseline-ws --listen "127.0.0.1:$BASE_PORT" --duration 30m >>"$OUT/baseline-ws.log" 2>&1 &
BWS=$!
PIDS+=("$BWS")
wait_ready "http://127.0.0.1:$BASE_PORT/health" 30
BW=(--url "ws://127.0.0.1:$BASE_PORT/" --publish batch)
load fanout-baseline-ws fanout "${BW[@]}" "${SHAPE[@]}" --rate "$RATE" --duration "$DURATION" --server-pid "$BWS"
load ramp-baseline-ws ramp "${BW[@]}" "${SHAPE[@]}" --rate-start "$RAMP_START" --rate-step "$RAMP_STEP" \
	--rate-max "$RAMP_MAX" --step-duration "$STEP" --p99-bound "$P99_BOUND" --server-pid "$BWS"
stop_pid "$BWS"
"$BIN/pushload" baseline-ws --listen "127.0.0.1:$BASE_PORT" --coalesce --duration 30m >>"$OUT/baseline-ws.log" 2>&1 &
BWS=$!
PIDS+=("$BWS")
wait_ready "http://127.0.0.1:$BASE_PORT/health" 30
load ramp-baseline-ws-coalesce ramp "${BW[@]}" "${SHAPE[@]}" --rate-start "$RAMP_START" --rate-step "$RAMP_STEP" \
	--rate-max "$RAMP_MAX" --step-duration "$STEP" --p99-bound "$P99_BOUND" --server-pid "$BWS"
stop_pid "$BWS"

# 9. Baseline (b): the JetStream pipeline alone.
log "pushload baseline-js -> baseline-js.json"
timeout "$STEP_TIMEOUT" "$BIN/pushload" baseline-js --duration "$JS_DURATION" --channels "$CHANNELS" --quiet \
	--out "$OUT/baseline-js.json" 2>>"$OUT/pushload.log" | tee "$OUT/baseline-js.txt"

# 10. Ratios.
if command -v jq >/dev/null; then
	rate_of() { [[ -f $OUT/$1.json ]] && jq -r "$2 // 0" "$OUT/$1.json" || echo 0; }
	pb_d=$(rate_of ramp-pushbridge .ramp.best_deliveries_per_second)
	pb_e=$(rate_of ramp-pushbridge .ramp.best_rate)
	bw_d=$(rate_of ramp-baseline-ws .ramp.best_deliveries_per_second)
	bwc_d=$(rate_of ramp-baseline-ws-coalesce .ramp.best_deliveries_per_second)
	js_e=$(rate_of baseline-js .baseline_js.consumed_per_second)
	{
		echo
		echo "== ratios (p99 <= $P99_BOUND, $CONNS connections over $CHANNELS channels)"
		printf 'pushbridge sustained deliveries/s %.0f; bare gorilla %.0f (%.0f%%); coalescing bare server %.0f (%.0f%%)\n' \
			"$pb_d" "$bw_d" "$(echo "$pb_d $bw_d" | awk '{print $2 ? 100*$1/$2 : 0}')" \
			"$bwc_d" "$(echo "$pb_d $bwc_d" | awk '{print $2 ? 100*$1/$2 : 0}')"
		printf 'pushbridge sustained events/s %.0f; JetStream pipeline alone %.0f (%.0f%%)\n' \
			"$pb_e" "$js_e" "$(echo "$pb_e $js_e" | awk '{print $2 ? 100*$1/$2 : 0}')"
	} | tee "$OUT/ratios.txt"
fi
log "results in $OUT"
