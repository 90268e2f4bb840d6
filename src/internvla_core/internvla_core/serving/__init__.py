"""Serve one loaded InternVLA-M1 to many robots over websockets (``internvla-serve``).

Speaks two wire dialects on one port: InternVLA-M1's (``batch_images`` in, ``normalized_actions`` out,
clients un-normalise) and starVLA's (``examples`` in, un-normalised ``actions`` out). Requests from all
connections are coalesced into batches (``batcher``) whose results equal one-at-a-time inference
(``engine``). No ROS here: the server runs on a GPU box without a ROS install.

Modules: ``wire`` (msgpack frames with numpy arrays, decoded defensively), ``protocol`` (request
parsing and validation, reply shapes), ``engine`` (batched, batch-invariant inference), ``batcher``
(coalescing window, fairness, bounded queue, timeouts), ``server`` (websocket transport, auth,
limits), ``cli`` (the console script).
"""

DEFAULT_PORT = 10093
