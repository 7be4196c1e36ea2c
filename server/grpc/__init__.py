"""The gRPC front end: the KServe V2 servicer (:mod:`~cnnserve.server.grpc.kserve_v2`), the ``cnnserve.v1``
servicer (:mod:`~cnnserve.server.grpc.cnnserve_v1`), exceptions turned into statuses
(:mod:`~cnnserve.server.grpc.status`) and the server that carries them (:mod:`~cnnserve.server.grpc.server`).
Each servicer converts messages and calls the protocol-agnostic data plane and services."""
