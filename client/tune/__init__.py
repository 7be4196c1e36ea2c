"""``cnnserve tune``: each model's best serving configuration under a latency budget, found by
starting real servers and measuring them, as Triton's Model Analyzer does.

One module per step: :mod:`.space` (the settings swept and a point's neighbours), :mod:`.launch`
(a server for one point, on free ports), :mod:`.sweep` (one point measured at rising concurrency),
:mod:`.results` (the resumable results file), :mod:`.search` (the constraints, the objective and
the walk through the space), :mod:`.report` (tables, JSON, chart), :mod:`.apply` (the chosen
point into config.json) and :mod:`.command` (the command line).
"""
