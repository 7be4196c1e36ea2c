"""The client side: every ``cnnserve`` subcommand that talks to a running server (``classify``,
``policy``, ``gtp``, ``bench``, ``compare``), the load generator, and what they share to reach a
server and read its metrics. Nothing here imports :mod:`cnnserve.server`: a client needs only the wire
(:mod:`cnnserve.generated`, :mod:`cnnserve.codec`) and what both sides share."""
