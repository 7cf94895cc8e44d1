-- wrk script for the gateway's full path (verify, decrypt, parse, durable publish, answer).
--
-- Plaintext mode (WXOA_BENCH_MODE=plain): the signature covers only token/timestamp/nonce, so one
-- signed query serves every request and each body gets a unique MsgId (no dedupe hits).
-- Safe mode (WXOA_BENCH_MODE=safe): msg_signature covers the ciphertext, so requests are
-- pre-built by `wxoa-bench-requests` into one file per wrk thread ("path<TAB>body" lines).

local mode = os.getenv("WXOA_BENCH_MODE") or "plain"
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  if mode == "safe" then
    requests = {}
    local file = os.getenv("WXOA_BENCH_FILE") .. "." .. id
    for line in io.lines(file) do
      local tab = line:find("\t", 1, true)
      requests[#requests + 1] = wrk.format("POST", line:sub(1, tab - 1), nil, line:sub(tab + 1))
    end
  else
    path = os.getenv("WXOA_BENCH_PATH")
  end
end

function request()
  counter = counter + 1
  if mode == "safe" then
    return requests[(counter - 1) % #requests + 1]
  end
  local body = "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[o_bench_" .. id ..
    "]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>" ..
    "<Content><![CDATA[benchmark message]]></Content><MsgId>" .. (id * 1000000000 + counter) .. "</MsgId></xml>"
  return wrk.format("POST", path, nil, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("non-2xx: %d, socket errors: %d\n", non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
