"""Finishing a run: the result record (record.json + metrics.csv) from the rounds it ran."""

from __future__ import annotations

from fednlp_bench.engine.run.environment import git_commit, hardware_info, package_versions
from fednlp_bench.engine.run.prepare import PreparedRun
from fednlp_bench.engine.eval.validation import EVAL_BATCH_SIZE
from fednlp_bench import progress as report
from fednlp_bench.engine.eval.test_split import evaluate_test
from fednlp_bench.results.record import RunRecord, config_hash


def finish_record(run: PreparedRun) -> RunRecord:
    """Write and return the record: config, partition, per-round (validation) metrics, the final model's
    test metrics, data used, baselines, totals, versions, hardware."""
    config, rounds = run.config, run.rounds
    report.phase(f"evaluating the final model on {len(run.test_raw):,} test examples")
    final_test, test_info = evaluate_test(run, EVAL_BATCH_SIZE)
    summary = getattr(run.task, "data_summary", None)
    data_info = summary() if callable(summary) else None
    make_baselines = getattr(run.task, "baselines", None)
    if callable(make_baselines):
        report.phase("computing the task's reference baselines")
    baselines = make_baselines() if callable(make_baselines) else None
    run.trainer.state.load(run.global_weights)  # the audit and per-client metrics use the final model
    extras = run.run_features.finish(run.task, run.trainer.model, run.trainer, run.eval_features, rounds, EVAL_BATCH_SIZE,
                                     central_steps=run.central_steps, test_raw=run.test_raw)
    record_config = config.to_dict()
    # DP runs: only released values (exact participants, losses, bytes go to a marked side file).
    published = run.run_features.record_rounds(rounds, run.run_dir, run.trainer.state.num_bytes)
    record = RunRecord(
        run_id=run.run_id,
        created=run.created,
        task=config.task,
        algorithm=config.algorithm,
        seed=config.seed,
        config=record_config,
        config_hash=config_hash(record_config),
        partition=run.partition_info,
        primary_metric=run.task.primary_metric,
        final_metrics=final_test,
        test=test_info,
        data=data_info,
        baselines=baselines,
        rounds=published,
        wall_time_s=float(sum(r.wall_time_s for r in rounds)),
        bytes_up=int(sum(r.bytes_up for r in published)),
        bytes_down=int(sum(r.bytes_down for r in published)),
        versions=package_versions(),
        git_commit=git_commit(),
        hardware={**hardware_info(run.trainer.device), **run.compute.describe()},
        resumed_after=list(run.resumed_after),
        **extras,
    )
    record.save(run.run_dir)
    return record
