-- wrk: GET one of BENCH_COUNT blobs of BENCH_BASE (a container URL path) with a SAS.
local base = os.getenv("BENCH_BASE")
local sas = os.getenv("BENCH_SAS")
local count = tonumber(os.getenv("BENCH_COUNT"))
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", base .. "/small-" .. (i % count) .. "?" .. sas)
end
local failures = 0
response = function(status) if status ~= 200 then failures = failures + 1 end end
done = function(summary) io.write(string.format("non-200 replies: %d\n", failures + summary.errors.status)) end
