-- A fixed request rate for wrk (Debian's wrk 4.1 is closed-loop; this makes it open-loop, like wrk2):
-- each thread hands out send slots every 1000/rate ms and delay() waits for the next free slot, so a
-- slow answer does not lower the offered rate while connections are free.
-- Arguments after `--`: <requests per second for this thread> <file of request paths> <bearer token>
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local now_buffer = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, now_buffer) -- CLOCK_MONOTONIC
  return tonumber(now_buffer.tv_sec) * 1000 + tonumber(now_buffer.tv_nsec) / 1e6
end

local paths, interval_ms, next_slot, position, token = {}, 1, nil, 0, ""

function init(args)
  interval_ms = 1000 / tonumber(args[1])
  for line in io.lines(args[2]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  token = args[3] or ""
  position = math.random(#paths)
end

function delay()
  local now = now_ms()
  if next_slot == nil then next_slot = now end
  local wait = next_slot - now
  next_slot = next_slot + interval_ms
  if wait <= 0 then return 0 end
  return math.floor(wait + 0.5)
end

function request()
  position = position % #paths + 1
  return wrk.format("GET", paths[position], { ["Authorization"] = "Bearer " .. token })
end

function done(summary, latency, requests)
  local out = string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "latency_us": {"min": %d, "mean": %.1f, "max": %d, "stdev": %.1f',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency.min, latency.mean, latency.max, latency.stdev)
  for _, p in ipairs({ 50, 75, 90, 99, 99.9 }) do
    local name = (tostring(p):gsub("%.", "_"))
    out = out .. string.format(', "p%s": %d', name, latency:percentile(p))
  end
  io.write("BENCH-RESULT " .. out .. "}}\n")
end
