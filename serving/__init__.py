"""Serving: the requests a person waits on (classify, infer, inspect, previews), on capacity of their own.

- `client`: the web side. Sends a request to the `infer` queue, which only serving workers consume,
  and waits for its answer within WORKBENCH_SERVING_TIMEOUT; a JSON 503 or 504 saying why otherwise.
- `work`: the serving worker's side. Models stay loaded between requests (training.warm), and
  concurrent requests for one model run as one batch (`batching`).
- `wire`: images travel inside the request, not through a shared folder.
"""

SERVING_QUEUE = "infer"  # the queue only serving workers consume (settings.WORKER_ROLES["serving"])
