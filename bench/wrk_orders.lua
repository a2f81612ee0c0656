-- wrk script: POST a new order (unique client_order_id) per request.
-- Env: WOJAK_BENCH_KEY (API key), WOJAK_BENCH_PREFIX (id prefix), WOJAK_BENCH_DELAY_MS (pacing per connection).
local thread_counter = 0
local key = os.getenv("WOJAK_BENCH_KEY") or ""
local prefix = os.getenv("WOJAK_BENCH_PREFIX") or "w"
local pace = tonumber(os.getenv("WOJAK_BENCH_DELAY_MS") or "0")

function setup(thread)
  thread:set("tid", thread_counter)
  thread_counter = thread_counter + 1
end

local counter = 0
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }

function request()
  counter = counter + 1
  local side = (counter % 2 == 0) and "buy" or "sell"
  local body = string.format(
    '{"client_order_id":"%s-%d-%d","account":"acct-%d","symbol":"NIFTY-FUT","side":"%s","quantity":"1","order_type":"limit","limit_price":"24000"}',
    prefix, tid, counter, counter % 100, side)
  return wrk.format("POST", "/v1/orders", headers, body)
end

function delay()
  return pace
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"status_errors":%d,"connect_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    summary.errors.status, summary.errors.connect, summary.errors.timeout))
end
