"""What ``cnnserve.v1`` does, protocol-agnostic: images in, labels out (:mod:`~cnnserve.server.services.classifier`);
a Go position in, move probabilities out (:mod:`~cnnserve.server.services.policy`). Both prepare their
inputs off the event loop and go through the data plane's batchers; :mod:`~cnnserve.server.services.admission`
keeps shutdown from losing a call that is still preparing."""
