"""Capture sidecar for an lmcache-e2e run on a real engine.

Watches RESULTS_DIR/results.json; once an engine is ready, records what it
serves (GET /version, /v1/models, /health, /metrics; a streamed chat and a
streamed completion, raw SSE bytes with headers; a plain completion;
POST /tokenize), then its /metrics every 10 s (the last kept) until the
stage is done. An LMCache MP server's HTTP side (port 8080) likewise.
Few short requests: they land while the first test pre-warms.
Usage: capture.py RESULTS_DIR OUT_DIR DONE_FILE
"""
import http.client
import json
import os
import sys
import time
import urllib.parse

rdir, out, done_file = sys.argv[1:4]
os.makedirs(out, exist_ok=True)


def request(url, method="GET", body=None, path=""):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    raw = r.read()
    head = f"HTTP {r.status} {r.reason}\n" + "".join(f"{k}: {v}\n" for k, v in r.getheaders())
    c.close()
    return r.status, head, raw


def save(name, head, raw):
    with open(os.path.join(out, name), "wb") as f:
        f.write(raw)
    with open(os.path.join(out, name + ".headers"), "w") as f:
        f.write(head)


def capture(e):
    url, tag = e["url"], e["name"].replace("@", "-")
    if e.get("role") == "service":
        return
    for path, name in [("/version", "version.json"), ("/v1/models", "models.json"),
                       ("/health", "health.txt"), ("/metrics", "metrics-ready.prom")]:
        try:
            _, head, raw = request(url, path=path)
            save(f"{tag}-{name}", head, raw)
        except Exception as x:  # noqa: BLE001 - evidence, not a test
            print(tag, path, x, flush=True)
    try:
        model = json.loads(open(os.path.join(out, f"{tag}-models.json")).read())["data"][0]["id"]
    except Exception:  # noqa: BLE001
        model = "auto"
    calls = [
        ("/v1/chat/completions", "chat-stream.sse", {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}),
        ("/v1/completions", "completions-stream.sse", {"model": model, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}),
        ("/v1/completions", "completion.json", {"model": model, "prompt": "The capital of France is", "max_tokens": 2, "temperature": 0, "seed": 42, "n": 1, "stream": False}),
        ("/tokenize", "tokenize.json", {"model": model, "prompt": "hi hi hi"}),
    ]
    for path, name, body in calls:
        try:
            _, head, raw = request(url, "POST", body, path)
            save(f"{tag}-{name}", head, raw)
        except Exception as x:  # noqa: BLE001
            print(tag, path, x, flush=True)


seen, last = set(), 0.0
while not os.path.exists(done_file):
    try:
        res = json.load(open(os.path.join(rdir, "results.json")))
    except Exception:  # noqa: BLE001 - not written yet, or mid-write
        time.sleep(2)
        continue
    for e in res.get("engines", []):
        if e.get("ready_secs") is not None and e["name"] not in seen:
            seen.add(e["name"])
            print("capturing", e["name"], e["url"], flush=True)
            capture(e)
    if time.time() - last > 10:
        last = time.time()
        for e in res.get("engines", []):
            if e["name"] in seen:
                u = e["url"] if e.get("role") != "service" else "http://127.0.0.1:8080"
                try:
                    _, head, raw = request(u, path="/metrics")
                    save(f"{e['name'].replace('@', '-')}-metrics-last.prom", head, raw)
                except Exception:  # noqa: BLE001 - stopped
                    pass
    time.sleep(1)
