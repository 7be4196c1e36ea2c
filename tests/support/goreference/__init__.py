"""The pure-Python Go rules and feature planes: the reference that the C code in
cnnserve/go/_fastgo.c is compared with, plane by plane (tests/cnnserve/go/test_fast_planes.py).

Slow (2-7 ms a position) but short and plain; it defines what the planes mean. The fast code must
agree with it bit for bit, so a change of definition is made here and in the C code together.
"""
