"""ONNX Runtime: which provider a session can use here (:mod:`~server.runtime.devices`), whether a
graph is the one config.json describes (:mod:`~server.runtime.graph`), and the sessions that run
a model's batches (:mod:`~server.runtime.runner`)."""
