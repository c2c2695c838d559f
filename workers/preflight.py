"""A job's pre-flight on this worker (app.ml.preflight): the whole run of a dry run, or the step
before a real job with batch_size "auto" trains (which then uses the largest batch size that fits,
up to ADAPT_AUTO_BATCH_SIZE_MAX)."""
from dataclasses import replace
from pathlib import Path

from app.config import get_settings
from app.jobs import lifecycle
from app.ml.config import default_batch_size
from app.ml.data import Splits
from app.ml.feature_cache import FeatureCache
from app.ml.preflight import preflight
from app.ml.recipe import build_recipe
from workers.plan import JobFailed, JobPlan


def run_preflight(plan: JobPlan, splits: Splits, work_dir: Path) -> dict:
    """The pre-flight report of the plan's job (batch_size "auto": measured at the method's
    default). No callbacks, no resume checkpoints; the shared feature cache is used, so a `head`
    job on the same data starts warm."""
    settings = get_settings()
    hp = plan.config.hyperparameters
    if hp["batch_size"] == "auto":
        hp = {**hp, "batch_size": default_batch_size(plan.config.method)}
    cache = (FeatureCache(settings.data_dir / "cache" / "features", settings.feature_cache_bytes)
             if settings.feature_cache_bytes else None)
    source = plan.source and replace(plan.source, logits_path=work_dir / "teacher-logits.st")
    recipe = build_recipe(
        replace(plan.config, hyperparameters=hp), plan.base, splits, work_dir=work_dir,
        feature_cache=cache, images_zip=plan.train.path if plan.train.format == "zip" else None,
        source=source)
    try:
        return preflight(recipe, steps=settings.preflight_steps,
                         budget_bytes=settings.preflight_memory_budget_mb << 20 or None)
    finally:
        recipe.cleanup()


def with_auto_batch_size(plan: JobPlan, splits: Splits, work_dir: Path, attempt: int) -> JobPlan:
    """The plan with batch_size "auto" replaced by the pre-flight's answer, recorded on the job
    row first (a later attempt reads the number and resumes exactly)."""
    report = run_preflight(plan, splits, work_dir / "preflight")
    if report["max_batch_size"] is None:
        raise JobFailed("out_of_memory", "Even the smallest batch does not fit this worker's "
                        f"memory budget ({report['memory_budget_bytes'] / 2**20:.0f} MiB): lower "
                        "max_length or choose another method.")
    hp = {**plan.config.hyperparameters,
          "batch_size": min(report["max_batch_size"], get_settings().auto_batch_size_max)}
    if hp["processes"] > hp["batch_size"]:
        hp["processes"] = hp["batch_size"]
    if not lifecycle.batch_size_chosen(plan.job_id, attempt, hp, report):
        raise JobFailed("lease_lost", "The job was taken over while its pre-flight ran.")
    return replace(plan, config=replace(plan.config, hyperparameters=hp))
