"""Library benchmarks (training loop, MEAL V2 reuse, CUDA, accuracy); ``python -m bench`` runs them with the service ones.

Every figure is printed next to a floor measured in the same run on the same machine (a
hand-written PyTorch loop, the same job without teacher-output reuse, ``/healthz``), so the
ratios hold on a noisy shared machine where absolute times do not.
"""
