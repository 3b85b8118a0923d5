#!/usr/bin/env bash
# dsrouter side by side with rsyslog and syslog-ng (full parse) in one run, one table.
#
#   bash bench/peers.sh                 # work dir ./bench-work (git-ignored); about 5 minutes
#   ROUNDS=5 CONNS="1 4" N=1000000 BENCH_WORK=/data/bw bash bench/peers.sh
#
# Steps (one LABEL for all, so the table compares one run):
#   1. the shared harness ../shared/bench/run_all.sh with no measuring section: setup (apt: rsyslog,
#      gcc, syslog-ng's libraries; syslog-ng unpacked into WORK/.opt; WORK/build/blast), the workload
#      (gen_events.py, seed 1, N events) and WORK/results/machine-LABEL.txt;
#   2. ROUNDS rounds; each runs, back to back through the harness's bench.py, the full-parse peers
#      (PEERS: rsyslog-fullparse syslog-ng-fullparse py-fast) and dsrouter through the harness's
#      `custom` hook (bench/dsrouter_contender.py), for every connection count in CONNS. Interleaving
#      the contenders keeps load from other processes from landing on one contender only; the
#      table shows the median over the rounds;
#      With DURABLE set (e.g. "rsyslog-disk rsyslog-disk-2w syslog-ng-reliable"), each round also
#      runs those: the same full-parse configurations with the C daemons' durable queues on
#      (bench/durable_peers.py), the counterpart of dsrouter's disk queue;
#   2b. paced UDP: ROUNDS rounds of UDP_PEERS and dsrouter at each rate of UDP_RATES, on a
#      UDP_N-event workload of its own; the table reports the events each one lost;
#   3. bench/inprocess.py and bench/tcp.py on the same file (ROUNDS repetitions each);
#   4. bench/report.py: one markdown table -> WORK/results/peers-LABEL.md.
# Knobs: N (100000), ROUNDS (3), CONNS ("1"; "" skips the TCP rounds), PEERS (the full-parse peers and both raw-copy
# configurations), QUEUE (disk: dsrouter's durable queue on), WORKERS (settings.workers;
# unset: the daemon's default), UDP_RATES ("20000 40000"; "" skips step 2b), UDP_N (200000),
# UDP_PEERS (rsyslog-fullparse syslog-ng-fullparse), SKIP_EXTRA=1 (no step 3), NORAW=1 (also
# dsrouter-noraw: both outputs with raw = false, the peers' output shape), MEMORY=1 (also
# dsrouter-memory: the memory queue, like the peers' in-memory queues), DURABLE (above), LABEL, BENCH_SHARED (the shared bench folder),
# DSROUTER_PYTHON (a python that imports dsrouter; default: python3 on PATH), SKIP_SETUP=1.
# Needs root for apt on the first run. All traffic stays on 127.0.0.1.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SHARED="$(cd "${BENCH_SHARED:-$HERE/../../shared/bench}" && pwd)"
WORK_IN=${BENCH_WORK:-bench-work}
mkdir -p "$WORK_IN"
WORK="$(cd "$WORK_IN" && pwd)"
PY="${DSROUTER_PYTHON:-$(command -v python3)}"
"$PY" -c 'import dsrouter.ds, dsrouter.dsl, dsrouter.ingest.transport' \
  || { echo "peers.sh: $PY cannot import dsrouter; set DSROUTER_PYTHON" >&2; exit 2; }
PY="$("$PY" -c 'import sys; print(sys.executable)')"   # absolute: the harness runs argv, no PATH

export N=${N:-100000}
export LABEL=${LABEL:-peers-$(date +%Y%m%d-%H%M%S)}
export BENCH_SHARED="$SHARED" DSROUTER_PYTHON="$PY" BENCH_WORK="$WORK"
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS-1}
PEERS=${PEERS:-rsyslog-fullparse rsyslog-fullparse-2w syslog-ng-fullparse rsyslog syslog-ng}
QUEUE=${QUEUE:-disk}
WORKERS_ARG=${WORKERS:+--workers $WORKERS}
UDP_RATES=${UDP_RATES-20000 40000}
UDP_N=${UDP_N:-200000}
UDP_PEERS=${UDP_PEERS:-rsyslog-fullparse syslog-ng-fullparse}
DURABLE_CMD="$PY $HERE/durable_peers.py --port {port} --out {out} --sev {outdir}/sev.log --bench {bench} --work {work}"
CMD="$PY $HERE/dsrouter_contender.py --port {port} --all {out} --sev {outdir}/sev.log --queue $QUEUE $WORKERS_ARG"

echo "== 1. shared harness: setup, workload (N=$N), machine description (label $LABEL)"
SECTIONS="none" bash "$SHARED/run_all.sh" --work "$WORK" > /dev/null
B=(python3 "$SHARED/bench.py" --work "$WORK" --reps 1 --label "$LABEL" --proto tcp)

for round in $(seq 1 "$ROUNDS"); do
  for c in $CONNS; do
    echo "== 2. round $round/$ROUNDS, $c connection(s): $PEERS, dsrouter"
    # shellcheck disable=SC2086
    "${B[@]}" --conns "$c" run $PEERS
    "${B[@]}" --conns "$c" custom --name dsrouter --cmd "$CMD" --extra-out sev.log=sev
    for p in ${DURABLE:-}; do
      "${B[@]}" --conns "$c" custom --name "$p" --cmd "$DURABLE_CMD $p" --extra-out sev.log=any
    done
    if [ -n "${MEMORY:-}" ]; then
      "${B[@]}" --conns "$c" custom --name dsrouter-memory --cmd "$CMD --queue memory" --extra-out sev.log=sev
    fi
    if [ -n "${NORAW:-}" ]; then
      "${B[@]}" --conns "$c" custom --name dsrouter-noraw --cmd "$CMD --no-raw" --extra-out sev.log=sev
    fi
  done
done

if [ -n "$UDP_RATES" ]; then
  # paced UDP: a smaller workload of its own (UDP_N events, same generator and seed), so that
  # loss measures the receiver at that rate, not how long a sender can keep it up
  UDP_DATA="$WORK/data/udp-$UDP_N.log"
  [ -f "$UDP_DATA.meta.json" ] \
    || python3 "$SHARED/gen_events.py" -n "$UDP_N" --seed 1 -o "$UDP_DATA" > /dev/null
  U=(python3 "$SHARED/bench.py" --work "$WORK" --data "$UDP_DATA" --reps 1 --label "$LABEL" --proto udp)
  for round in $(seq 1 "$ROUNDS"); do
    for rate in $UDP_RATES; do
      echo "== 2b. round $round/$ROUNDS, UDP paced at $rate/s: $UDP_PEERS, dsrouter"
      # shellcheck disable=SC2086
      "${U[@]}" --udp-rate "$rate" run $UDP_PEERS
      "${U[@]}" --udp-rate "$rate" custom --name dsrouter --cmd "$CMD --udp" --extra-out sev.log=sev
    done
  done
fi

if [ -z "${SKIP_EXTRA:-}" ]; then
  echo "== 3. dsrouter in one process, and over TCP with bench/tcp.py"
  "$PY" "$HERE/inprocess.py" --work "$WORK" -n "$N" --reps "$ROUNDS"
  "$PY" "$HERE/tcp.py" --work "$WORK" -n "$N" --reps "$ROUNDS" --queue "$QUEUE"
fi

echo "== 4. one table"
"$PY" "$HERE/report.py" --work "$WORK" --label "$LABEL" ${SKIP_EXTRA:+--no-own}
