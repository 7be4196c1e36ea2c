"""Training the policy network on game records, in small steps with their data on disk.

:mod:`.records` reads a folder of SGF games (self-play from ``cnnserve go-data``, or any
collection) and splits them into training and held-out games by game; :mod:`.symmetry` holds
the eight symmetries of the board; :mod:`.batches` turns positions into planes and targets;
:mod:`.loop` trains, evaluates and checkpoints; :mod:`.command` is ``cnnserve go-train``.
"""
