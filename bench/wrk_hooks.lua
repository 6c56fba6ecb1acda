-- Signed job-status callbacks for wrk, each one a distinct delivery.
--
-- The service knows an HMAC-signed request by its signature (a replay under another id is a
-- duplicate), and wrk's Lua has no HMAC: bench/wrk.py signs one distinct body per request
-- beforehand, one per line: "<timestamp>\t<signature>\t<body>", the timestamp valid for the
-- run. Each thread keeps its own share of the lines; every request has its own X-Delivery-Id.
--
-- args: <bodies file> <delivery id prefix> <count> <threads> <done dir>
--   count = 0: as many as wrk sends in its duration (ids <prefix>-<thread>-<n>); a thread that
--              runs out of bodies starts again, and the service's answers say "duplicate"
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
ok, failed, duplicate, filler = 0, 0, 0, 0

function init(args)
   prefix = args[2]
   count = tonumber(args[3])
   local nthreads = tonumber(args[4])
   done_dir = args[5]
   if count > 0 then
      lo = math.floor(count * tid / nthreads)
      hi = math.floor(count * (tid + 1) / nthreads)
      idx = lo
   end
   local n = 0
   for line in io.lines(args[1]) do
      local mine
      if count > 0 then mine = n >= lo and n < hi else mine = n % nthreads == tid end
      if mine then
         local ts, sig, body = line:match("^(%d+)\t(%S+)\t(.*)$")
         bodies[#bodies + 1] = { ts, sig, body }
      end
      n = n + 1
   end
end

function request()
   if count > 0 and idx >= hi then
      return wrk.format("GET", "/healthz")
   end
   local b = bodies[((idx - lo) % #bodies) + 1]
   local id
   if count > 0 then id = prefix .. "-" .. idx else id = prefix .. "-" .. tid .. "-" .. idx end
   local req = wrk.format("POST", wrk.path, {
      ["Content-Type"] = "application/json",
      ["X-Timestamp"] = b[1],
      ["X-Signature"] = b[2],
      ["X-Delivery-Id"] = id,
   }, b[3])
   -- wrk calls request() once in thread 0 before the run to check it, and never sends
   -- that one: it must not use up a delivery.
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
   if status ~= 200 then
      failed = failed + 1
   elseif body and body:find('"duplicate": *true') then
      duplicate = duplicate + 1
   else
      ok = ok + 1
   end
   if count > 0 and ok + failed + duplicate >= hi - lo then
      local f = io.open(done_dir .. "/t" .. tid, "w")
      if f then f:write(ok .. " " .. failed .. "\n"); f:close() end
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local total = { ok = 0, failed = 0, duplicate = 0, filler = 0 }
   for _, t in ipairs(threads) do
      for k, _ in pairs(total) do total[k] = total[k] + (t:get(k) or 0) end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"duration_us": %.0f, "requests": %.0f, "ok": %.0f, "failed": %.0f, "duplicate": %.0f, ' ..
      '"filler": %.0f, "errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f}, ' ..
      '"latency_us": {"p50": %.0f, "p90": %.0f, "p99": %.0f, "max": %.0f}}\n',
      summary.duration, summary.requests, total.ok, total.failed, total.duplicate, total.filler,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
