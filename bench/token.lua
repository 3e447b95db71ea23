-- wrk script: client-credentials token requests with the secret from the environment.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials&client_id=" .. os.getenv("BENCH_APP_ID")
  .. "&client_secret=" .. os.getenv("BENCH_SECRET")
  .. "&scope=https%3A%2F%2Fstorage.azure.com%2F.default"

local failures = 0
response = function(status, headers, body)
  if status ~= 200 then failures = failures + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("non-200 replies: %d\n", failures + summary.errors.status))
end
