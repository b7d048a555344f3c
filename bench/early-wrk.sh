#!/usr/bin/env bash
# Early side-by-side signal (issue 3): lb vs nginx (upstream keepalive) vs direct, same
# origin, small keep-alive GETs with wrk. One proxy worker each, pinned to core 0; the
# origin and wrk share core 1. Interleaved rounds. `cargo xtask bench` (issue 6) replaces
# this with the rigorous method.
#   usage: bench/early-wrk.sh [rounds] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
CONNS=50
cargo build --release -q -p lb-userspace -p lb-origin
for tool in wrk nginx taskset; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx util-linux"; exit 1; }
done
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
ORIGIN=127.0.0.1:19081; LB=127.0.0.1:19080; NGINX=127.0.0.1:19082

taskset -c 1 target/release/lb-origin --listen $ORIGIN --name bench >/dev/null &
cat > "$WORK/lb.toml" <<TOML
[listener]
address = "$LB"
workers = 1
pin_workers = false
[[origins]]
id = "bench"
address = "$ORIGIN"
keepalive_timeout = "60s"
[kernel]
enabled = false
TOML
taskset -c 0 target/release/lb run --config "$WORK/lb.toml" --log warn &
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream origin { server $ORIGIN; keepalive 64; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
taskset -c 0 nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
sleep 1
declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
  # Vary the order each round.
  order=("direct $ORIGIN" "lb $LB" "nginx $NGINX")
  [ $((round % 2)) -eq 0 ] && order=("nginx $NGINX" "lb $LB" "direct $ORIGIN")
  for entry in "${order[@]}"; do
    set -- $entry
    rps=$(taskset -c 1 wrk -t1 -c$CONNS -d${SECS}s "http://$2/bench" | awk '/Requests\/sec/ {print $2}')
    RESULTS[$1]="${RESULTS[$1]:-} $rps"
    echo "round $round $1: $rps req/s"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
D=$(echo ${RESULTS[direct]} | median); L=$(echo ${RESULTS[lb]} | median); N=$(echo ${RESULTS[nginx]} | median)
echo
echo "median req/s over $ROUNDS rounds of ${SECS}s, wrk -t1 -c$CONNS, 1 proxy worker on core 0:"
printf "  direct %10.0f\n  lb     %10.0f  (%.2fx nginx, %.2fx direct)\n  nginx  %10.0f\n" "$D" "$L" "$(echo "$L/$N" | bc -l)" "$(echo "$L/$D" | bc -l)" "$N"
