"""What ``cnnserve.v1`` does, protocol-agnostic: images in, labels out (:mod:`~server.services.classifier`);
a Go position in, move probabilities out (:mod:`~server.services.policy`). Both prepare their
inputs off the event loop and go through the data plane's batchers; :mod:`~server.services.admission`
keeps shutdown from losing a call that is still preparing."""
