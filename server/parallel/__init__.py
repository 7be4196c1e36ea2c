"""Several front-end worker processes on one gRPC port, under a supervisor (``--workers N``)."""
