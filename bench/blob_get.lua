-- wrk: GET one of BENCH_COUNT blobs of BENCH_BASE (a container URL path) with a SAS,
-- or with BENCH_TOKEN as a bearer token when it is set.
local base = os.getenv("BENCH_BASE")
local sas = os.getenv("BENCH_SAS")
local token = os.getenv("BENCH_TOKEN") or ""
local headers = { ["x-ms-version"] = "2025-01-05" }
if token ~= "" then
  headers["Authorization"] = "Bearer " .. token
  sas = "t=1"
end
local count = tonumber(os.getenv("BENCH_COUNT"))
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", base .. "/small-" .. (i % count) .. "?" .. sas, headers)
end
local failures = 0
response = function(status) if status ~= 200 then failures = failures + 1 end end
done = function(summary) io.write(string.format("non-200 replies: %d\n", failures + summary.errors.status)) end
