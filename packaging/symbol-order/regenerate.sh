#!/usr/bin/env bash
# Rewrites symbol-order.txt: the functions the release, bench and small builds of the agent run at
# start-up and while idle (five pipelines: bare, the embedded default, one file -> Loki,
# the Debian package's host agent with its back-ends down and up, the IoT gateway;
# /health and /metrics asked once),
# first run first.
# Needs python3 and nm; takes a few minutes (three fat-LTO links). Run from the repository
# root after a dependency or compiler change (symbol names carry hashes of both: stale
# names are skipped by the linker, so an old file only covers less).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=packaging/symbol-order
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
triple=$(rustc -vV | sed -n 's/^host: //p')

# The release and the gateway's size-optimised build with their symbol tables
# (-C strip=none keeps every name as it is).
cargo rustc --release --bin sluice -- -C strip=none
cp "target/$triple/release/sluice" "$work/release"
cargo rustc --profile small --bin sluice -- -C strip=none
cp "target/$triple/small/sluice" "$work/small"
# The bench build (dev-dependencies change dependency features, so other names): its
# rustc command line, run again keeping the symbol table.
touch src/main.rs
cargo bench --bench e2e --no-run -v 2>&1 |
  sed -n 's/^ *Running `\(.*--crate-name sluice .*src\/main.rs.*\)`$/\1/p' > "$work/bench.sh"
sed -i "s/-C strip=symbols/-C strip=none/; s|--out-dir [^ ]*|--out-dir $work/bench-out|" "$work/bench.sh"
mkdir -p "$work/bench-out"
CARGO_PKG_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) \
  CARGO_PKG_NAME=sluice CARGO_CRATE_NAME=sluice CARGO_MANIFEST_DIR="$PWD" bash "$work/bench.sh"
find "$work/bench-out" -type f -name 'sluice-*' ! -name '*.d' -exec cp {} "$work/bench" \;

mkdir -p "$work/in" && : > "$work/in/app.log"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api=127.0.0.1:$(port)
cat > "$work/bare.yaml" <<YAML
data_dir: $work/data
api: { address: "$api" }
pipelines:
  idle:
    sources:
      - { type: demo, rate: 0.001 }
    sinks:
      - { type: blackhole }
YAML
cat > "$work/loki.yaml" <<YAML
data_dir: $work/data
api: { address: "$api" }
pipelines:
  idle:
    sources:
      - { type: file, include: ["$work/in/*.log"] }
    sinks:
      - { type: loki, endpoint: "http://127.0.0.1:$(port)" }
YAML
: > "$work/all"
# The package's host agent runs twice: with its back-ends down (sinks retrying into their
# disk buffers) and up (answered by this stand-in, as Loki, Elasticsearch and a
# remote-write receiver answer a good request), 20 s each so two collections of its
# 15 s metrics sources are traced.
cat > "$work/backends.py" <<'PY'
import http.server, sys
class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if "_bulk" in self.path:
            body = b'{"took":1,"errors":false,"items":[]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = b""
            self.send_response(204)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Backend).serve_forever()
PY
backend_port=$(port)
python3 "$work/backends.py" "$backend_port" &
backend=$!
trap 'kill $backend 2>/dev/null; rm -rf "$work"' EXIT
backend_url=http://127.0.0.1:$backend_port
for build in release bench small; do
  for config in bare.yaml "" loki.yaml "$PWD/pipelines/host-agent.yaml" up \
    "$PWD/pipelines/iot-gateway.yaml"; do
    rm -rf "$work/data" && mkdir -p "$work/data"
    args=(run)
    seconds=10
    urls=()
    case "$config" in
      up) config=$PWD/pipelines/host-agent.yaml seconds=20
        urls=(LOKI_URL=$backend_url ELASTICSEARCH_URL=$backend_url
          REMOTE_WRITE_URL=$backend_url/api/v1/write) ;;
      */host-agent.yaml) seconds=20 ;;
    esac
    [ -n "$config" ] && args+=(-c "$([ -f "$work/$config" ] && echo "$work/$config" || echo "$config")")
    env "${urls[@]}" SLUICE_LOG=warn SLUICE_DATA_DIR="$work/data" SLUICE_API_ADDRESS="$api" \
      SLUICE_SYSLOG_ADDRESS=127.0.0.1:$(port) SYSLOG_UDP_ADDRESS=127.0.0.1:$(port) \
      SYSLOG_TCP_ADDRESS=127.0.0.1:$(port) \
      python3 "$here/trace_functions.py" "$seconds" "$work/$build" "${args[@]}" >> "$work/all" &
    sleep 6
    curl -s -m 2 "http://$api/health" > /dev/null || true
    curl -s -m 2 "http://$api/metrics" > /dev/null || true
    wait "$!"
  done
done
awk 'NF && !seen[$0]++' "$work/all" > "$here/symbol-order.txt"
wc -l "$here/symbol-order.txt"
