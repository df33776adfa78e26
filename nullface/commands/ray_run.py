"""``anonymize ... --ray [ADDRESS]``: the same command on Ray Data, for datasets.

The files to do become a Ray dataset (``from_items``); ``map_batches`` with a callable class runs them on a
pool of workers (actors), each loading the models once (one GPU each where the cluster has GPUs), each call
a group of files through the same ``process_files`` as a plain run (faces of the group share UNet batches).
Outputs are written by the workers, atomically; the report (``report.json``, the manifest: per file status,
faces, audit, seconds) is written by this process as each group comes back, so a re-run skips what is done,
also after a worker or this process died. Without ADDRESS a local Ray instance starts on this machine's CPUs
(and GPUs); with one, the run joins that cluster (input and output folders must be reachable by every node).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger("nullface")

WORKER_RETRIES = 3          # a worker that dies is restarted and its group retried this often, then the run stops


class FileWorker:
    """One Ray actor: the models loaded once (``engine()``), then groups of files through ``process_files``."""

    def __init__(self, engine, options, quality: int, args):
        self.anonymizer, self.detector = engine()
        self.options, self.quality, self.args = options, quality, args

    def __call__(self, batch: dict) -> dict:
        from .outputs import VIDEO_EXTS
        from .process import process_files
        from .video import process_video
        group = [(Path(s), str(k), Path(t)) for s, k, t in zip(batch["src"], batch["key"], batch["target"])]
        photos = [g for g in group if g[0].suffix.lower() not in VIDEO_EXTS]
        done = dict(zip([k for _, k, _ in photos],
                        process_files(photos, self.detector, self.anonymizer, self.options, self.quality)))
        for src, key, target in group:                 # a video alone, in chunks of frames
            if key not in done:
                done[key] = process_video(src, key, target, self.detector, self.anonymizer, self.options, self.args)
        return {"key": np.array([k for _, k, _ in group], dtype=object),
                "entry": np.array([json.dumps(done[k]) for _, k, _ in group], dtype=object)}


def _connect(address: str):
    from ..errors import MissingDependencyError
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("--ray needs Ray Data: pip install 'comfyui-nullface[ray]' "
                                     "(or pip install 'ray[data]')") from None
    if not ray.is_initialized():
        root = str(Path(__file__).resolve().parents[2])          # workers import this very package
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}}, log_to_driver=True)
    return ray


def run_on_ray(args, plan, outdir: Path, options, quality: int, report: dict, entries: dict, report_path: Path,
               engine) -> bool:
    """Process ``plan`` [(src, rel, out_rel)] on Ray; ``entries``/``report.json`` updated as groups finish.
    Returns True when interrupted (Ctrl-C or the run stopped on failing workers: a re-run resumes)."""
    from .process import shareable
    from .outputs import write_json
    from .report import with_totals
    absolute = getattr(args, "absolute_paths", False)
    where = {str(rel): (Path(src).resolve(), out_rel) for src, rel, out_rel in plan}
    ray = _connect(args.ray)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    workers = args.ray_workers or max(1, gpus)
    per_worker_cpus = 1 if gpus else max(1, cpus // workers - 1)    # leave a CPU for Ray Data's own tasks
    rows = [{"src": str(Path(src).resolve()), "key": str(rel), "target": str((outdir / out_rel).resolve())}
            for src, rel, out_rel in plan]                     # workers do not start in this folder
    log.info("Ray: %d file(s) on %d worker(s) (%s)", len(rows), workers,
             f"{gpus} GPU(s)" if gpus else f"{per_worker_cpus} CPU(s) each")
    ds = ray.data.from_items(rows).map_batches(
        FileWorker, fn_constructor_kwargs={"engine": engine, "options": options, "quality": quality, "args": args},
        batch_size=max(1, options.batch), batch_format="numpy", concurrency=workers,
        num_gpus=1 if gpus else 0, num_cpus=per_worker_cpus,
        max_restarts=WORKER_RETRIES, max_task_retries=WORKER_RETRIES)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for key, entry in zip(batch["key"], batch["entry"]):
                entry = json.loads(entry)
                entries[str(key)] = entry if absolute else shareable(entry, where[str(key)][0], str(key),
                                                                     where[str(key)][1])
            report["files"] = entries
            write_json(report_path, with_totals(report))
    except KeyboardInterrupt:
        log.warning("interrupted: finished files are kept; run the same command again to resume")
        return True
    except Exception as exc:                     # workers kept dying: what finished is in the report
        log.error("the Ray run stopped (%s: %s); finished files are kept: run the same command again to resume",
                  type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return True
    return False
