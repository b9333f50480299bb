"""The transfer machinery every push shares, whatever its source and destination.

- :mod:`.pipeline`: the blob workers, single flight per digest, manifests after their blobs.
- :mod:`.parts`: a blob read as parts, hashed (sha256 and xxh3) and encoded in one pass.
- :mod:`.budget`: the byte budget that bounds memory.
- :mod:`.retry`: backoff with full jitter, the run's retry budget, one request retried in place.
- :mod:`.requeue`: the scheduler that hands blobs out again after their backoff.
- :mod:`.verdicts`: what an error means (retry, requeue, fail), with each transport's table.
- :mod:`.pacing`: token buckets and AIMD windows under a destination's request quotas.
- :mod:`.config`: :class:`~.config.PushConfig` and the memory formula.
- :mod:`.metrics`, :mod:`.report`, :mod:`.progress`: what a push did, and shows as it goes.

Nothing here imports a transport's client library.
"""
