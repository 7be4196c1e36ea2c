"""ONNX Runtime: which provider a session can use here (:mod:`~cnnserve.server.runtime.devices`), whether a
graph is the one config.json describes (:mod:`~cnnserve.server.runtime.graph`), and the sessions that run
a model's batches (:mod:`~cnnserve.server.runtime.runner`)."""
