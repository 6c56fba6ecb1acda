-- GET /api/jobs/<id> as a frontend polls it, cycling through job ids.
-- args: <jobs file: "<id>\t<etag>" per line> <bearer token> <mode: "full" or "match">
-- "full": plain GETs (200 with the job and its events); "match": If-None-Match with the
-- job's current ETag (304 while the job does not change).
local jobs = {}
local token, mode
local idx = 0
ok, failed = 0, 0
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   for line in io.lines(args[1]) do
      local id, etag = line:match("^(%S+)\t(%S*)$")
      if id then jobs[#jobs + 1] = { id, etag } end
   end
   token = args[2]
   mode = args[3] or "full"
end

function request()
   idx = idx % #jobs + 1
   local job = jobs[idx]
   local headers = { ["Authorization"] = "Bearer " .. token }
   if mode == "match" and job[2] ~= "" then headers["If-None-Match"] = job[2] end
   return wrk.format("GET", "/api/jobs/" .. job[1], headers)
end

function response(status, headers, body)
   if status == 200 or status == 304 then ok = ok + 1 else failed = failed + 1 end
end

function done(summary, latency, requests)
   local total_ok, total_failed = 0, 0
   for _, t in ipairs(threads) do
      total_ok = total_ok + (t:get("ok") or 0)
      total_failed = total_failed + (t:get("failed") or 0)
   end
   io.write(string.format('BENCH_JSON {"duration_us": %.0f, "requests": %.0f, "bytes": %.0f, "ok": %.0f, ' ..
      '"failed": %.0f, "errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f}, ' ..
      '"latency_us": {"p50": %.0f, "p90": %.0f, "p99": %.0f, "p99.9": %.0f, "max": %.0f, "mean": %.1f}}\n',
      summary.duration, summary.requests, summary.bytes, total_ok, total_failed,
      summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean))
end
