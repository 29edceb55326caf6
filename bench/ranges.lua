-- wrk script of case 8 (bench/driver.py): every request is a GET of a random 1 MiB range
-- of one file, as an engine reading tensors out of a model file would ask.
--   wrk -t2 -c32 -d10s --timeout 10s -s bench/ranges.lua URL -- FILE_SIZE SEED
-- Offsets are uniform over the file (not aligned to 1 MiB); each wrk thread has its own
-- seed, so runs with the same SEED ask for the same ranges. At the end one line
-- `JSON {...}` on stdout: requests, bytes, seconds, errors and the latency percentiles in
-- microseconds (wrk's own per-request latency: from a request's write to its response's
-- last byte).

local RANGE = 1024 * 1024
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local size, span

function init(args)
  size = tonumber(args[1])
  span = size - RANGE + 1
  math.randomseed(tonumber(args[2] or "1") * 1000 + id)
end

function request()
  -- LuaJIT draws math.random(m, n) in doubles: exact for any offset of a file this size.
  local first = math.random(0, span - 1)
  return wrk.format("GET", nil, { Range = "bytes=" .. first .. "-" .. (first + RANGE - 1) })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %d, "bytes": %d, "seconds": %.6f, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.bytes, summary.duration / 1e6,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
