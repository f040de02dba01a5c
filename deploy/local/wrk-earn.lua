-- wrk script for deploy/local/wrk.sh: each request earns 1 point for the
-- next of the members in WRK_MEMBERS, as the manager in WRK_TOKEN, with a
-- fresh Idempotency-Key when WRK_KEYED is 1.
local members = {}
for id in string.gmatch(os.getenv("WRK_MEMBERS") or "", "%S+") do
  members[#members + 1] = id
end
local token = os.getenv("WRK_TOKEN")
local keyed = os.getenv("WRK_KEYED") == "1"
local counter = 0
local prefix

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  prefix = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end

function request()
  counter = counter + 1
  local id = members[(counter % #members) + 1]
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }
  if keyed then
    headers["Idempotency-Key"] = prefix .. "-" .. counter
  end
  return wrk.format("POST", "/members/" .. id .. "/points/earn", headers, '{"amount":1}')
end

-- Answers other than 200, by status, printed at the end: a conflict on a
-- member two connections earn for at once (409 request.conflict) is not a
-- failure of the service; a 5xx is.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

others = ""
function response(status, headers, body)
  if status ~= 200 then
    others = others .. status .. " "
  end
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status in string.gmatch(thread:get("others") or "", "%d+") do
      counts[status] = (counts[status] or 0) + 1
    end
  end
  for status, count in pairs(counts) do
    io.write(string.format("  status %s: %d\n", status, count))
  end
end
