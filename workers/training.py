"""Train a job's plan in this process: a single-process job, or one rank of a job trained by
several processes (workers.distributed), where rank 0 alone records the job (progress, metrics,
checkpoints, cancellation) and the other ranks only train."""
from dataclasses import replace
from pathlib import Path

from app.config import get_settings
from app.ml import checkpointing
from app.ml.callbacks import PeriodicSave
from app.ml.data import Splits
from app.ml.distributed import Group
from app.ml.feature_cache import FeatureCache
from app.ml.recipe import TrainResult, build_recipe
from app.predict_activity import PredictActivity
from app.storage import get_storage
from workers.callbacks import JobRecorder, YieldToPredictions
from workers.lease import Lease
from workers.plan import JobPlan
from workers.resume import ResumeCheckpoints


def train_plan(plan: JobPlan, splits: Splits, lease: Lease, work_dir: Path,
               group: Group | None = None) -> TrainResult:
    settings = get_settings()
    leader = group is None or group.leader
    resume = ResumeCheckpoints(get_storage(), plan.tenant, plan.job_id, work_dir)
    recorder = (JobRecorder(plan.job_id, plan.tenant, lease, get_storage(),
                            settings.progress_interval_s, resume) if leader else None)
    cache = (FeatureCache(settings.data_dir / "cache" / "features", settings.feature_cache_bytes)
             if settings.feature_cache_bytes else None)
    source = plan.source and replace(plan.source,
                                     logits_path=resume.dir / "teacher-logits.safetensors")
    callbacks = [PeriodicSave(settings.checkpoint_every_steps, settings.checkpoint_every_s),
                 recorder] if recorder else []
    # adapt-serve's CPU worker: predictions on the same cores come first
    activity = (PredictActivity.reader(settings.predict_activity_file)
                if recorder and group is None and plan.config.device == "cpu"
                and settings.worker_yield_max_pause_s else None)
    if activity:
        callbacks.append(YieldToPredictions(plan.job_id, activity,
                                            settings.worker_yield_max_pause_s))
    recipe = build_recipe(
        plan.config, plan.base, splits, work_dir=work_dir, callbacks=callbacks,
        resume_dir=resume.dir, keep_last=settings.keep_last_checkpoints,
        feature_cache=cache, images_zip=plan.train.path if plan.train.format == "zip" else None,
        group=group, source=source)
    try:
        # the ranks of a group find the checkpoint workers.distributed.launch downloaded
        recipe.setup(resume_from=resume.latest() if group is None
                     else checkpointing.latest(resume.dir))
        if recorder:
            recorder.setup_done(recipe.feature_stats, recipe.resumed_step, recipe.state,
                                recipe.data_report, recipe.precision_trial)
        return recipe.train()
    finally:
        recipe.cleanup()
