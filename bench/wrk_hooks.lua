-- Signed job-status callbacks for wrk, each one a distinct delivery.
--
-- wrk's Lua has no HMAC, so bodies are signed beforehand (bench/wrk.py writes them, one per
-- line: "<timestamp>\t<signature>\t<body>", the timestamp valid for the run) and every
-- request gets its own X-Delivery-Id header, which is not part of the signature.
--
-- args: <bodies file> <delivery id prefix> <count> <threads> <done dir>
--   count = 0: as many as wrk sends in its duration (ids <prefix>-<thread>-<n>)
--   count > 0: exactly `count` deliveries (ids <prefix>-<n>, n < count) split over the
--              threads; a thread that has sent its share sends GET /healthz until all its
--              answers are in, writes <done dir>/t<thread> and stops.

local thread_count = 0
local threads = {}

function setup(thread)
   thread:set("tid", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

local bodies = {}
local prefix, count, done_dir
local lo, hi, idx = 0, 0, 0
local first_call = true
ok, failed, filler = 0, 0, 0

function init(args)
   local f = assert(io.open(args[1], "r"))
   for line in f:lines() do
      local ts, sig, body = line:match("^(%d+)\t(%S+)\t(.*)$")
      if ts then bodies[#bodies + 1] = { ts, sig, body } end
   end
   f:close()
   prefix = args[2]
   count = tonumber(args[3])
   local nthreads = tonumber(args[4])
   done_dir = args[5]
   if count > 0 then
      lo = math.floor(count * tid / nthreads)
      hi = math.floor(count * (tid + 1) / nthreads)
      idx = lo
   end
end

function request()
   if count > 0 and idx >= hi then
      return wrk.format("GET", "/healthz")
   end
   local b = bodies[(idx % #bodies) + 1]
   local id
   if count > 0 then id = prefix .. "-" .. idx else id = prefix .. "-" .. tid .. "-" .. idx end
   local req = wrk.format("POST", wrk.path, {
      ["Content-Type"] = "application/json",
      ["X-Timestamp"] = b[1],
      ["X-Signature"] = b[2],
      ["X-Delivery-Id"] = id,
   }, b[3])
   -- wrk calls request() once in thread 0 before the run to check it, and never sends
   -- that one: it must not use up a delivery id.
   if first_call and tid == 0 then
      first_call = false
   else
      idx = idx + 1
   end
   return req
end

function response(status, headers, body)
   if body and body:find('"status": *"ok"') and not body:find("delivery_id") then
      filler = filler + 1
      return
   end
   if status == 200 then ok = ok + 1 else failed = failed + 1 end
   if count > 0 and ok + failed >= hi - lo then
      local f = io.open(done_dir .. "/t" .. tid, "w")
      if f then f:write(ok .. " " .. failed .. "\n"); f:close() end
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local total_ok, total_failed, total_filler = 0, 0, 0
   for _, t in ipairs(threads) do
      total_ok = total_ok + (t:get("ok") or 0)
      total_failed = total_failed + (t:get("failed") or 0)
      total_filler = total_filler + (t:get("filler") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"duration_us": %.0f, "requests": %.0f, "bytes": %.0f, "ok": %.0f, "failed": %.0f, "filler": %.0f, ' ..
      '"errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f}, ' ..
      '"latency_us": {"p50": %.0f, "p90": %.0f, "p99": %.0f, "p99.9": %.0f, "max": %.0f, "mean": %.1f}}\n',
      summary.duration, summary.requests, summary.bytes, total_ok, total_failed, total_filler,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean))
end
