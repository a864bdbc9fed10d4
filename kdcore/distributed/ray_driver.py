"""``python -m kdcore.distributed.ray_driver --address HOST:PORT FOLDER``: the job as a Ray Train run on a cluster.

Ray Train's ``TorchTrainer`` places ``nodes × devices`` workers (``ScalingConfig``), joins them in
one torch process group (gloo on CPU, NCCL on GPUs) with the same ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK`` environment as torch's launcher, and each worker runs
:func:`kdcore.distributed.rank.run_ray_rank`, the very function a torchrun rank runs. The cluster's
nodes must see the job's work folder at the same path (a shared filesystem, as Ray Train's own
``storage_path`` needs): the spec, teachers and data are read there, rank 0 writes its checkpoints,
exports and relay file there. No retries here: a failed run ends the attempt, and the service
resumes it from its newest checkpoint. The workers belong to this driver, so killing it (the
supervisor's cancel) ends them too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kdcore.distributed.rank import run_ray_rank
from kdcore.spec import JobSpec


def workers_per_node(spec: JobSpec, cluster_gpus: float, nodes: int) -> int:
    """``training.devices`` on a Ray node: 'auto' is the cluster's GPUs shared over the job's nodes, or 1 without GPUs."""
    if spec.training.devices == "auto":
        return max(1, int(cluster_gpus // nodes))
    return spec.training.devices


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kdcore.distributed.ray_driver")
    parser.add_argument("--address", required=True, help="the Ray cluster's GCS address (host:port)")
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    spec = JobSpec.model_validate_json((args.folder / "spec.json").read_text())

    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ray.init(address=args.address, log_to_driver=True)
    gpus = ray.cluster_resources().get("GPU", 0.0)
    use_gpu = spec.training.device == "cuda" or (spec.training.device == "auto" and gpus > 0)
    nodes = spec.training.nodes
    trainer = TorchTrainer(
        run_ray_rank,
        train_loop_config={"folder": str(args.folder.resolve())},
        scaling_config=ScalingConfig(num_workers=nodes * workers_per_node(spec, gpus, nodes), use_gpu=use_gpu),
        run_config=RunConfig(name=args.folder.parent.name, storage_path=str((args.folder / "ray").resolve()), failure_config=FailureConfig(max_failures=0)),
    )
    trainer.fit()


if __name__ == "__main__":
    main()
