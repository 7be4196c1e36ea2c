"""Per-request traces, as Triton's: the settings (:mod:`.config`), which requests are traced
(:mod:`.sampler`), what a trace holds (:mod:`.record`), Triton's JSON trace file
(:mod:`.triton_file`) and the tracer the data plane calls (:mod:`.tracer`)."""
