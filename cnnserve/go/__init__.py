"""Go for the policy network: the board and its rules, positions from SGF records or text, the 48
feature planes of AlphaGo's policy network, and GTP coordinates.

Nothing here knows about gRPC or ONNX Runtime. The server's Policy
(:mod:`cnnserve.server.services.policy`) reads positions into planes with it; the GTP engine
(:mod:`cnnserve.client.gtp_engine`) keeps its board with it.
"""
