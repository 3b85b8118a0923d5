"""Delivery: per-output queues, workers, retries, dead letters and the policies between them.

``queue`` (the interface) → ``memqueue`` / ``diskqueue`` (backends) → ``deadletter`` (the
store) → ``worker`` (one per output: fetch, send, classify, retry, dead-letter) → ``engine``
(builds them from the config, takes routed batches from the event loop, applies ``when_full``).
"""
