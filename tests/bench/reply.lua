-- wrk script for the passive-reply round trip: gateway.lua's requests, plus a count of the
-- answers that carry a passive reply (XML) and those that got "success" (no reply in time).

dofile("tests/bench/gateway.lua")

replies = 0
others = 0

function response(status, headers, body)
  if body:sub(1, 5) == "<xml>" then
    replies = replies + 1
  else
    others = others + 1
  end
end

local gateway_done = done

function done(summary, latency, requests)
  local r, o = 0, 0
  for _, thread in ipairs(threads) do
    r = r + thread:get("replies")
    o = o + thread:get("others")
  end
  io.write(string.format("passive replies: %d, other answers (success, no reply in time): %d\n", r, o))
  gateway_done(summary, latency, requests)
end
