#!/usr/bin/env bash
# Loopback load test: bare axum, axum-tessera and tower-sessions serving the same router
# (heavy/examples/bench_server.rs) on 127.0.0.1, driven by wrk on the read, write and new
# workloads. Prints requests/second and p99 latency, the median of RUNS runs each, and the
# ratios to bare axum and of axum-tessera to tower-sessions. Also prints the server's CPU
# time per request (utime + stime from /proc/<pid>/stat over the run, divided by the
# requests wrk completed): on a machine shared with other work, requests/second swing with
# whatever else runs, while CPU time per request stays close to the server's own cost.
#
#   scripts/load.sh                         # 5 runs x 5 s per variant and workload (~4 min)
#   DURATION=10s RUNS=5 CONNECTIONS=64 scripts/load.sh
#
# Installs wrk from the distribution's packages when missing. Starts and stops its servers.
set -euo pipefail

DURATION=${DURATION:-5s}
RUNS=${RUNS:-5}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
VARIANTS=(axum tessera tower-sessions)
WORKLOADS=(read write new)

cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq wrk >&2
fi

cargo build --release -p axum-tessera-e2e --example bench_server >&2
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
server="$target_dir/release/examples/bench_server"

work=$(mktemp -d)
declare -A pid addr cookie
cleanup() {
    for v in "${!pid[@]}"; do
        kill "${pid[$v]}" 2>/dev/null || true
        wait "${pid[$v]}" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

for v in "${VARIANTS[@]}"; do
    "$server" "$v" >"$work/$v.out" 2>"$work/$v.err" &
    pid[$v]=$!
    for _ in $(seq 100); do
        grep -q '^listening ' "$work/$v.out" 2>/dev/null && break
        kill -0 "${pid[$v]}" 2>/dev/null || { cat "$work/$v.err" >&2; exit 1; }
        sleep 0.1
    done
    addr[$v]=$(sed -n 's/^listening //p' "$work/$v.out")
    cookie[$v]=$(sed -n 's/^cookie //p' "$work/$v.out")
    [ -n "${addr[$v]}" ] || { echo "$v did not start" >&2; exit 1; }
done

# wrk's latency figures come as 812.00us, 1.23ms or 2.00s; print microseconds.
to_us() {
    awk -v x="$1" 'BEGIN {
        n = x + 0
        if (x ~ /us$/) print n; else if (x ~ /ms$/) print n * 1000;
        else if (x ~ /s$/) print n * 1000000; else print n }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

CLK_TCK=$(getconf CLK_TCK)
# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat; the
# command name in field 2 has no spaces here).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Runs interleave the variants, so a burst of noise on the machine hits all of them alike.
for w in "${WORKLOADS[@]}"; do
    for r in $(seq "$RUNS"); do
        for v in "${VARIANTS[@]}"; do
            header=()
            if [ "$w" != new ] && [ -n "${cookie[$v]}" ]; then
                header=(-H "Cookie: ${cookie[$v]}")
            fi
            before=$(cpu_ticks "${pid[$v]}")
            out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${header[@]}" \
                "http://${addr[$v]}/$w")
            after=$(cpu_ticks "${pid[$v]}")
            requests=$(awk '/ requests in / { print $1 }' <<<"$out")
            awk -v t=$((after - before)) -v n="$requests" -v hz="$CLK_TCK" \
                'BEGIN { printf "%.2f\n", t * 1000000 / hz / n }' >>"$work/$w.$v.cpu"
            rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
            p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
            errors=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' <<<"$out")
            [ -z "$errors" ] || { echo "$v $w: $errors non-2xx responses" >&2; exit 1; }
            echo "$rps" >>"$work/$w.$v.rps"
            to_us "$p99" >>"$work/$w.$v.p99"
            echo "$w run $r $v: $rps req/s, p99 $p99" >&2
        done
    done
done

echo
echo "loopback, wrk -t$THREADS -c$CONNECTIONS -d$DURATION, median of $RUNS runs"
echo
echo "| workload | server CPU us/request: axum | tessera (x axum) | tower-sessions (x axum) | tessera / tower-sessions |"
echo "| --- | ---: | ---: | ---: | ---: |"
for w in "${WORKLOADS[@]}"; do
    a=$(median <"$work/$w.axum.cpu")
    t=$(median <"$work/$w.tessera.cpu")
    s=$(median <"$work/$w.tower-sessions.cpu")
    awk -v w="$w" -v a="$a" -v t="$t" -v s="$s" 'BEGIN {
        printf "| %s | %.2f | %.2f (%.2fx) | %.2f (%.2fx) | %.2fx faster |\n",
            w, a, t, t / a, s, s / a, s / t }'
done
echo
echo "| workload | axum req/s | tessera req/s (x axum) | tower-sessions req/s (x axum) | tessera / tower-sessions | p99 axum / tessera / tower-sessions |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for w in "${WORKLOADS[@]}"; do
    a=$(median <"$work/$w.axum.rps")
    t=$(median <"$work/$w.tessera.rps")
    s=$(median <"$work/$w.tower-sessions.rps")
    pa=$(median <"$work/$w.axum.p99")
    pt=$(median <"$work/$w.tessera.p99")
    ps=$(median <"$work/$w.tower-sessions.p99")
    awk -v w="$w" -v a="$a" -v t="$t" -v s="$s" -v pa="$pa" -v pt="$pt" -v ps="$ps" 'BEGIN {
        printf "| %s | %.0f | %.0f (%.2fx) | %.0f (%.2fx) | %.2fx | %.0f / %.0f / %.0f us |\n",
            w, a, t, t / a, s, s / a, t / s, pa, pt, ps }'
done
