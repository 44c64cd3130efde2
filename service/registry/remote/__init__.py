"""Remote models: a version whose model runs in a model server (MLServer, KServe, Triton...)
called over the Open Inference Protocol V2 or KServe's v1 protocol, pinned by a
fingerprint of its answers on the reference rows.

``spec`` (the manifest's ``artifact`` block), ``codec`` (the wire formats), ``client``
(pooled, batched, bounded, retried calls), ``fingerprint`` and ``status`` (is the model
behind the endpoint still the registered one), ``predictor`` (the ``Predictor`` the
explainers call) and ``registration`` (the checks before a remote version is stored).
"""
