#!/usr/bin/env bash
# Writes docs/demo.png: starts the demo with a short idle timeout, signs in as alice in
# headless Chromium (through ChromeDriver's WebDriver API), waits for the expiry banner and
# takes the screenshot. Needs chromium, chromedriver, curl and python3 (Debian: apt-get
# install chromium chromium-driver curl python3).
#
#   scripts/screenshot.sh [output.png]
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-docs/demo.png}"
demo_port="${DEMO_PORT:-3917}"
driver_port="${DRIVER_PORT:-9517}"
chromium="$(command -v chromium || command -v chromium-browser)"
chromedriver="$(command -v chromedriver)"

cargo build --quiet --example demo
target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
profile="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$profile"
}
trap cleanup EXIT

# 20 s idle: the client warns 8 s before the end, so the banner shows 12 s after sign-in.
DEMO_IDLE_SECS=20 DEMO_ADDR="127.0.0.1:$demo_port" RUST_LOG=warn \
  "$target_dir/debug/examples/demo" >/dev/null &
pids+=($!)
"$chromedriver" --port="$driver_port" >/dev/null 2>&1 &
pids+=($!)

wait_for() { # url
  for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
  return 1
}
wait_for "http://127.0.0.1:$demo_port/api/session/client.js"
wait_for "http://127.0.0.1:$driver_port/status"

mkdir -p "$(dirname "$out")"
CHROMIUM="$chromium" PROFILE="$profile" DRIVER="http://127.0.0.1:$driver_port" \
  BASE="http://127.0.0.1:$demo_port" OUT="$out" python3 - <<'PY'
import base64, json, os, time, urllib.request

driver, base = os.environ["DRIVER"], os.environ["BASE"]

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(driver + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.load(res)["value"]

args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-sync",
        "--hide-scrollbars", "--window-size=1100,1040", "--user-data-dir=" + os.environ["PROFILE"]]
caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
        "goog:chromeOptions": {"binary": os.environ["CHROMIUM"], "args": args}}}}
sid = call("POST", "/session", caps)["sessionId"]
s = "/session/" + sid
try:
    def find(css):
        found = call("POST", s + "/element", {"using": "css selector", "value": css})
        return next(iter(found.values()))

    call("POST", s + "/url", {"url": base + "/"})
    call("POST", s + "/element/" + find("#username") + "/value", {"text": "alice"})
    call("POST", s + "/element/" + find("#password") + "/value", {"text": "alice"})
    call("POST", s + "/element/" + find("#remember") + "/click", {})
    call("POST", s + "/element/" + find("#login") + "/click", {})
    # Bounded wait for the client's warning banner (not a timing assertion).
    deadline = time.time() + 40
    while True:
        shown = call("POST", s + "/execute/sync", {
            "script": "const b = document.getElementById('session-banner');"
                      "return !!b && !b.hidden && /ends in/.test(b.textContent);", "args": []})
        if shown:
            break
        if time.time() > deadline:
            raise SystemExit("the session banner never showed")
        time.sleep(0.25)
    time.sleep(1.2)  # let the countdown tick once after the banner appears
    png = base64.b64decode(call("GET", s + "/screenshot"))
    with open(os.environ["OUT"], "wb") as f:
        f.write(png)
    print("wrote", os.environ["OUT"], len(png), "bytes")
finally:
    call("DELETE", s)
PY
