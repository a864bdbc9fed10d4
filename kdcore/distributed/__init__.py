"""One job on several devices or nodes: torch.distributed ranks launched, supervised and kept in step.

:mod:`~kdcore.distributed.launch` picks how a job runs and stands over its ranks; each rank runs
:mod:`~kdcore.distributed.rank`; :mod:`~kdcore.distributed.data_parallel` wraps the distiller in
DistributedDataParallel; :mod:`~kdcore.distributed.relay` carries rank 0's reports back.
"""
