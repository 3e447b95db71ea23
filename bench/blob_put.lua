-- wrk: PUT 4 KiB blobs under unique names with a SAS; each acknowledged PUT is durable.
-- BENCH_PREFIX keeps each run's names apart, so that every run creates blobs (an overwrite
-- costs more: the old version is read and its file removed).
local base = os.getenv("BENCH_BASE")
local sas = os.getenv("BENCH_SAS")
local token = os.getenv("BENCH_TOKEN") or ""
local prefix = os.getenv("BENCH_PREFIX") or "run"
local headers = { ["x-ms-blob-type"] = "BlockBlob", ["x-ms-version"] = "2025-01-05", ["Content-Type"] = "application/octet-stream" }
if token ~= "" then
  headers["Authorization"] = "Bearer " .. token
  sas = "t=1"
end
local body = string.rep("k", 4096)
local counter = 0
local tag = 0
setup = function(thread)
  tag = tag + 1
  thread:set("tag", tag)
end
request = function()
  counter = counter + 1
  return wrk.format("PUT", base .. "/put-" .. prefix .. "-" .. tag .. "-" .. counter .. "?" .. sas, headers, body)
end
local failures = 0
response = function(status) if status ~= 201 then failures = failures + 1 end end
done = function(summary) io.write(string.format("non-201 replies: %d\n", failures + summary.errors.status)) end
