-- wrk script for the gateway's full path (verify, decrypt, parse, durable publish, answer).
-- Requests are pre-built by `wxoa-bench-requests` (one file per wrk thread, "path<TAB>body"
-- lines, each with a unique MsgId), so wrk spends no time building them.

threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  requests = {}
  for line in io.lines(os.getenv("WXOA_BENCH_FILE") .. "." .. id) do
    local tab = line:find("\t", 1, true)
    requests[#requests + 1] = wrk.format("POST", line:sub(1, tab - 1), nil, line:sub(tab + 1))
  end
end

function request()
  counter = counter + 1
  return requests[(counter - 1) % #requests + 1]
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx: %d, socket errors: %d\n", summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
