"""Go for the policy network: the board and its rules, positions from SGF records or text, the 48
feature planes of AlphaGo's policy network, and GTP coordinates.

Nothing here knows about gRPC or ONNX Runtime; :mod:`server.policy` puts it together with the
data plane.
"""
