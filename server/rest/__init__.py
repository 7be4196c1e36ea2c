"""The HTTP front end: KServe V2 REST on ``--http-port``, as Triton serves it."""
