"""Inference benchmark: generation speed, verification cost, audit economics, verifier accuracy.

    python -m benchmarks.inference [--quick] [--json] [--threads N] [--settings-only]

On the embedded default model (SmolLM2-135M-Instruct Q4_1), for the
`inference.calibration` prompts:

- generation tok/s (end to end per job, and decode only);
- verification time / generation time per job (target <= 0.35), verified on
  a second model instance, as an auditing validator would: its KV cache holds
  the jobs it scored before, never the generation it is checking, so only a
  genuinely shared prefix (the chat template's system turn) is reused;
- false rejections of honest outputs (must be 0) and detection rate on the
  cheat set (per kind);
- the honest-gap distribution (max, 99.9th percentile) for every pair of
  generator and verifier engine settings, threads {1, 2} x prefill batch
  {512, 64}, verified from tokens and from text (`measure_settings_gaps`;
  CPU only: this machine has no GPU);
- the audit policy (`economy.audit`) simulated with the measured
  verification cost: whole-network audit compute / generation compute (target
  <= 15%; for an honest network, and with 10% of workers cheating) and the probability of catching a worker that cheats on 10% of its
  jobs within 100 jobs (target >= 99%), for a new worker and for one that
  turns after 1,000 clean jobs.

Prints a table, writes benchmarks/results/inference.json, and with --json
prints the result object as the last line.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import numpy as np

from economy.audit import DEFAULT_AUDIT_POLICY, compute_catch_probability, simulate_catch, simulate_network
from inference.calibration import (
    CALIBRATION_PROMPTS,
    CHEAT_KINDS,
    LONG_PROMPTS,
    RESPELLED_OUTPUT_PROMPTS,
    build_cheat_set,
    generate_honest,
    make_calibration_jobs,
)
from inference.jobs import JobSpec, get_prompt_tokens, make_job_output
from inference.engine import EngineSettings, load_model, supports_gpu_offload
from inference.verifier import ACCEPT_THRESHOLD_PPM, GAP_TOLERANCE_NATS, Verifier, compute_score_ppm, is_accepted
from benchmarks.results_io import print_result_line, write_result

RESULTS = Path(__file__).with_name("results") / "inference.json"
SETTINGS_RESULTS = Path(__file__).with_name("results") / "inference_settings.json"


def make_auditor(threads: int | None) -> Verifier:
    """A verifier on its own model instance: an auditing validator never holds the worker's KV cache."""
    return Verifier(load_model(n_threads=threads))


COST_DIGITS = {"generation_tok_s": 2, "decode_tok_s": 2, "verification_over_generation": 4,
               "verification_prefix_reused_share": 4}


def summarise_cost(rows) -> dict:
    """Generation speed and verification cost over measured jobs (unrounded; `round_cost` for output)."""
    generation_s = sum(r["generation_s"] for r in rows)
    scored_tokens = sum(r["prompt_tokens"] + r["output_tokens"] - 1 for r in rows)
    return {
        "generation_tok_s": sum(r["output_tokens"] for r in rows) / generation_s,
        "decode_tok_s": sum(r["output_tokens"] - 1 for r in rows) / sum(r["decode_s"] for r in rows),
        "verification_over_generation": sum(r["verification_s"] for r in rows) / generation_s,
        "verification_prefix_reused_share": 1 - sum(r["verification_decoded_tokens"] for r in rows) / scored_tokens,
    }


def round_cost(summary: dict) -> dict:
    return {name: round(value, COST_DIGITS[name]) for name, value in summary.items()}


def measure_cost_at(threads: int, jobs, network_size: dict) -> dict:
    """Generation and verification cost, and the audit share it implies, at another thread count."""
    model = load_model(n_threads=threads)
    try:
        auditor = make_auditor(threads)
        summary = summarise_cost(measure_jobs(model, auditor, jobs))
        auditor.model.close()
    finally:
        model.close()
    share = simulate_network(DEFAULT_AUDIT_POLICY, verification_cost_ratio=summary["verification_over_generation"],
                             **network_size).audit_compute_share
    return {"threads": threads, **round_cost(summary), "audit_compute_share": round(share, 4)}


def measure_jobs(model, verifier, jobs):
    rows = []
    for job in jobs:
        prompt = get_prompt_tokens(model, job)
        decoded_before = verifier.model.tokens_decoded
        started = time.perf_counter()
        first_at = None
        tokens = []
        for token in model.iter_greedy(prompt, job.max_tokens):
            tokens.append(token)
            if first_at is None:
                first_at = time.perf_counter()
        generated = time.perf_counter()
        result = verifier.score(job, tokens)
        verified = time.perf_counter()
        rows.append({
            "prompt_tokens": len(prompt),
            "output_tokens": len(tokens),
            "generation_s": generated - started,
            "decode_s": generated - first_at,
            "verification_s": verified - generated,
            "verification_decoded_tokens": verifier.model.tokens_decoded - decoded_before,
            "score_ppm": result.score_ppm,
            "accepted": result.accepted,
            "max_gap": result.max_gap,
            "exact": result.n_exact,
            "tokens": tuple(tokens),
        })
    return rows


def measure_cheats(model, verifier, jobs, honest):
    by_kind = {kind: [0, 0] for kind in CHEAT_KINDS}  # [rejected, total]
    best_cheat_score = 0.0
    for i, job in enumerate(jobs):
        other = honest[(i + 7) % len(honest)]
        for cheat in build_cheat_set(model, job, honest[i], other, seed=i):
            if list(cheat.tokens) == list(honest[i]):
                continue  # e.g. a temperature sample that happened to be greedy: not a cheat
            result = verifier.evaluate(job, cheat.tokens)
            by_kind[cheat.kind][0] += not result.accepted
            by_kind[cheat.kind][1] += 1
            best_cheat_score = max(best_cheat_score, result.score)
    return by_kind, best_cheat_score


# Generator x verifier engine settings for the honest-gap matrix: thread count
# and prefill batch both change the order of floating-point sums.
GAP_SETTINGS = tuple(EngineSettings(n_threads=t, n_batch=b) for t in (1, 2) for b in (512, 64))


def name_setting(settings: EngineSettings) -> str:
    return f"{settings.n_threads}t/b{settings.n_batch}"


def make_gap_jobs(sha256: bytes, quick: bool) -> list[JobSpec]:
    """Calibration prompts, the respelled ones (text verification) and the long ones (chunked prefill)."""
    count, max_tokens = (12, 32) if quick else (len(CALIBRATION_PROMPTS), 48)
    chats = CALIBRATION_PROMPTS[:count] + RESPELLED_OUTPUT_PROMPTS + LONG_PROMPTS
    return [JobSpec.from_chat(chat, sha256, max_tokens) for chat in chats]


def measure_settings_gaps(quick: bool) -> dict:
    """Honest-gap distribution for every generator setting verified under every verifier setting.

    Each generator setting generates every job greedily; each verifier setting
    scores every distinct output (a model instance per setting, auditing job
    after job, so its KV cache holds the previous job's prefix as a
    validator's would), from its tokens and from its text
    (`Verifier.get_tokens_from_text`, as for an OpenAI-compatible backend).
    No GPU exists on this project's machine: every row is CPU.
    """
    outputs: dict[str, list] = {}
    jobs = None
    for settings in GAP_SETTINGS:
        model = load_model(settings=settings)
        try:
            jobs = jobs or make_gap_jobs(model.sha256, quick)
            outputs[name_setting(settings)] = [generate_honest(model, job) for job in jobs]
        finally:
            model.close()
    reference = outputs[name_setting(GAP_SETTINGS[0])]
    pairs = []
    for settings in GAP_SETTINGS:
        verifier = Verifier(load_model(settings=settings))
        model = verifier.model
        try:
            scored: dict[tuple[int, tuple[int, ...]], tuple] = {}
            for generator, tokens_per_job in outputs.items():
                gaps, text_rejected, token_rejected, text_differs = [], 0, 0, 0
                for i, (job, tokens) in enumerate(zip(jobs, tokens_per_job)):
                    if (i, tokens) not in scored:
                        prompt = get_prompt_tokens(model, job)
                        token_gaps = model.score_output(prompt, tokens).gaps
                        output = make_job_output(model, prompt, tokens, job.max_tokens)
                        from_text = verifier.get_tokens_from_text(job, output.text, ended=output.finish_reason == "stop")
                        text_result = verifier.evaluate(job, from_text)
                        scored[(i, tokens)] = (token_gaps, text_result.accepted, tuple(from_text) != tokens)
                    token_gaps, text_accepted, differs = scored[(i, tokens)]
                    gaps.append(token_gaps)
                    token_rejected += not is_accepted(compute_score_ppm(token_gaps, verifier.tolerance), verifier.threshold_ppm)
                    text_rejected += not text_accepted
                    text_differs += differs
                every = np.concatenate(gaps)
                pairs.append({
                    "generator": generator,
                    "verifier": name_setting(settings),
                    "outputs_differing_from_1t_b512": sum(a != b for a, b in zip(tokens_per_job, reference)),
                    "tokens": int(every.size),
                    "max_gap_nats": round(float(every.max()), 4),
                    "p999_gap_nats": round(float(np.percentile(every, 99.9)), 4),
                    "p99_gap_nats": round(float(np.percentile(every, 99)), 4),
                    "exact_argmax_rate": round(float(np.count_nonzero(every == 0) / every.size), 4),
                    "beyond_tolerance": int(np.count_nonzero(every > GAP_TOLERANCE_NATS)),
                    "rejected_from_tokens": token_rejected,
                    "rejected_from_text": text_rejected,
                    "text_tokens_differing": text_differs,
                })
        finally:
            model.close()
    worst = max(pair["max_gap_nats"] for pair in pairs)
    return {
        "jobs": len(jobs),
        "max_tokens": jobs[0].max_tokens,
        "device": "GPU" if supports_gpu_offload() else "CPU only (no GPU on this machine; GPU offload not measured)",
        "pairs": pairs,
        "max_gap_nats": worst,
        "max_p999_gap_nats": max(pair["p999_gap_nats"] for pair in pairs),
        "tolerance_nats": GAP_TOLERANCE_NATS,
        "tolerance_over_max_gap": round(GAP_TOLERANCE_NATS / worst, 2) if worst else None,
        "honest_rejected": sum(pair["rejected_from_tokens"] + pair["rejected_from_text"] for pair in pairs),
        "tail": measure_gap_tail(quick),
    }


def measure_gap_tail(quick: bool) -> dict:
    """The far tail of honest gaps: long outputs, one generator, verifiers at both prefill batches.

    The matrix above shows that threads and batch size change no generated
    token and no gap's maximum here, so the tail is sampled where it is
    cheapest: more tokens rather than more settings.
    """
    count, max_tokens = (12, 128) if quick else (len(CALIBRATION_PROMPTS), 256)
    model = load_model(settings=GAP_SETTINGS[0])
    try:
        jobs = make_calibration_jobs(model.sha256, max_tokens, count)
        outputs = [generate_honest(model, job) for job in jobs]
    finally:
        model.close()
    tail = {"jobs": len(jobs), "max_tokens": max_tokens, "generator": name_setting(GAP_SETTINGS[0]), "verifiers": []}
    for settings in (GAP_SETTINGS[0], GAP_SETTINGS[1]):
        model = load_model(settings=settings)
        try:
            per_job = [model.score_output(get_prompt_tokens(model, job), tokens).gaps for job, tokens in zip(jobs, outputs)]
        finally:
            model.close()
        every = np.concatenate(per_job)
        worst = sorted(((float(g.max()), job.get_chat()[-1][1][:40]) for g, job in zip(per_job, jobs)), reverse=True)
        tail["verifiers"].append({
            "verifier": name_setting(settings),
            "tokens": int(every.size),
            "max_gap_nats": round(float(every.max()), 4),
            "p999_gap_nats": round(float(np.percentile(every, 99.9)), 4),
            "p9999_gap_nats": round(float(np.percentile(every, 99.99)), 4),
            "gaps_over": {str(x): int(np.count_nonzero(every > x)) for x in (0.3, 0.4, 0.5, GAP_TOLERANCE_NATS)},
            "exact_argmax_rate": round(float(np.count_nonzero(every == 0) / every.size), 4),
            "worst_jobs": [[round(g, 3), prompt] for g, prompt in worst[:3]],
        })
    tail["tolerance_over_max_gap"] = round(GAP_TOLERANCE_NATS / max(v["max_gap_nats"] for v in tail["verifiers"]), 2)
    return tail


def print_settings_table(gaps: dict, console: Console) -> None:
    table = Table(title=f"honest gaps across engine settings ({gaps['jobs']} jobs, max_tokens {gaps['max_tokens']}, "
                        f"{gaps['device']}); tolerance {gaps['tolerance_nats']} nats")
    # gen / ver: generator / verifier settings (threads, prefill batch); "!= ref": outputs unlike
    # 1t/b512's; "text != gen": outputs whose tokens from text are not the generated ones.
    for column in ("gen", "ver", "!= ref", "tokens", "max gap", "p99.9", "p99", "argmax", "> tol",
                   "rejected tok/text", "text != gen"):
        table.add_column(column, justify="right")
    for pair in gaps["pairs"]:
        table.add_row(pair["generator"], pair["verifier"], str(pair["outputs_differing_from_1t_b512"]), str(pair["tokens"]),
                      str(pair["max_gap_nats"]), str(pair["p999_gap_nats"]), str(pair["p99_gap_nats"]),
                      str(pair["exact_argmax_rate"]), str(pair["beyond_tolerance"]),
                      f"{pair['rejected_from_tokens']} / {pair['rejected_from_text']}", str(pair["text_tokens_differing"]))
    console.print(table)
    console.print(f"largest honest gap {gaps['max_gap_nats']} nats (p99.9 at most {gaps['max_p999_gap_nats']}); "
                  f"tolerance {gaps['tolerance_nats']} = {gaps['tolerance_over_max_gap']}x it; "
                  f"honest outputs rejected: {gaps['honest_rejected']}")
    tail = gaps.get("tail")
    if tail:
        for v in tail["verifiers"]:
            console.print(f"tail, {tail['jobs']} jobs x max_tokens {tail['max_tokens']}, {tail['generator']} -> "
                          f"{v['verifier']}: {v['tokens']} tokens, max gap {v['max_gap_nats']}, p99.9 {v['p999_gap_nats']}, "
                          f"p99.99 {v['p9999_gap_nats']}, gaps over {v['gaps_over']}, exact argmax {v['exact_argmax_rate']}; "
                          f"worst {v['worst_jobs']}")
        console.print(f"tolerance {gaps['tolerance_nats']} = {tail['tolerance_over_max_gap']}x the tail's largest gap")


def run(quick: bool, threads: int | None) -> dict:
    n_jobs, max_tokens, n_cheat_jobs = (8, 64, 6) if quick else (24, 128, 16)
    model = load_model(n_threads=threads)
    verifier = make_auditor(threads)
    jobs = make_calibration_jobs(model.sha256, max_tokens, n_jobs)
    rows = measure_jobs(model, verifier, jobs)
    honest = [row["tokens"] for row in rows]
    cheat_jobs = make_calibration_jobs(model.sha256, 24, n_cheat_jobs)
    cheat_honest = [tuple(model.iter_greedy(get_prompt_tokens(model, j), j.max_tokens)) for j in cheat_jobs]
    by_kind, best_cheat = measure_cheats(model, verifier, cheat_jobs, cheat_honest)

    total_tokens = sum(r["output_tokens"] for r in rows)
    cost = summarise_cost(rows)
    ratio = cost["verification_over_generation"]
    per_job_ratio = [r["verification_s"] / r["generation_s"] for r in rows]
    long_rows = [r for r in rows if r["output_tokens"] >= 32]
    long_ratio = sum(r["verification_s"] for r in long_rows) / sum(r["generation_s"] for r in long_rows) if long_rows else None

    trials = 2_000 if quick else 10_000
    network_size = dict(workers=10 if quick else 40, jobs_per_worker=1_000 if quick else 2_000)
    network = simulate_network(DEFAULT_AUDIT_POLICY, verification_cost_ratio=ratio, **network_size)
    # With cheaters that keep working after being caught (the router would
    # starve them once their quality average falls; the simulation does not).
    network_cheaters = simulate_network(
        DEFAULT_AUDIT_POLICY, verification_cost_ratio=ratio, cheater_fraction=0.1, **network_size
    )
    new_cheater = simulate_catch(DEFAULT_AUDIT_POLICY, 0.1, 100, trials=trials)
    turned_cheater = simulate_catch(DEFAULT_AUDIT_POLICY, 0.1, 100, prior_clean_jobs=1_000, trials=trials)
    # The default is 1 thread because a devnet shares its cores among 4 workers; a worker with
    # this 2-core machine to itself runs 2 (`--worker.threads 2`), the setting the figures use.
    two_threads = None if quick or model.n_threads == 2 else measure_cost_at(2, jobs, network_size)
    detected = sum(v[0] for v in by_kind.values())
    cheats = sum(v[1] for v in by_kind.values())
    false_rejections = sum(not r["accepted"] for r in rows)
    return {
        "model_sha256": model.sha256.hex(),
        "threads": model.n_threads,
        "quick": quick,
        "jobs": len(rows),
        "max_tokens": max_tokens,
        "generation_tokens": total_tokens,
        **round_cost(cost),
        "verification_over_generation_median_job": round(statistics.median(per_job_ratio), 4),
        "verification_over_generation_jobs_32plus_tokens": round(long_ratio, 4) if long_ratio else None,
        "verification_target": 0.35,
        "honest_outputs": len(rows),
        "false_rejections": false_rejections,
        "false_rejection_rate": false_rejections / len(rows),
        "honest_min_score": min(r["score_ppm"] for r in rows) / 1e6,
        "honest_max_gap_nats": round(max(r["max_gap"] for r in rows), 4),
        "honest_exact_argmax_rate": round(sum(r["exact"] for r in rows) / total_tokens, 4),
        "cheats": cheats,
        "cheat_detection_rate": detected / cheats if cheats else None,
        "cheat_detection_by_kind": {k: (v[0] / v[1] if v[1] else None) for k, v in by_kind.items()},
        "cheat_max_score": round(best_cheat, 4),
        "tolerance_nats": GAP_TOLERANCE_NATS,
        "accept_threshold": ACCEPT_THRESHOLD_PPM / 1e6,
        "audit_policy": DEFAULT_AUDIT_POLICY._asdict(),
        "audit_rate": round(network.audit_rate, 4),
        "audit_compute_share": round(network.audit_compute_share, 4),
        "audit_compute_target": 0.15,
        "audit_compute_share_with_10pct_cheaters": round(network_cheaters.audit_compute_share, 4),
        "two_threads": two_threads,
        "cheaters_caught": f"{network_cheaters.cheaters_caught}/{network_cheaters.cheaters}",
        "catch_10pct_cheater_within_100_new_worker": new_cheater.probability_caught,
        "catch_10pct_cheater_within_100_after_1000_clean_jobs": turned_cheater.probability_caught,
        "catch_exact_new_worker": round(compute_catch_probability(DEFAULT_AUDIT_POLICY, 0.1, 100), 4),
        "catch_exact_after_1000_clean_jobs": round(
            compute_catch_probability(DEFAULT_AUDIT_POLICY, 0.1, 100, prior_clean_jobs=1_000), 4),
        "catch_target": 0.99,
        "settings_gaps": measure_settings_gaps(quick),
    }


def print_table(result: dict, console: Console) -> None:
    table = Table(title=f"inference benchmark ({'quick' if result['quick'] else 'full'}, {result['threads']} thread(s))")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    rows = [
        ("generation tok/s (end to end)", result["generation_tok_s"], ""),
        ("decode tok/s", result["decode_tok_s"], ""),
        ("verification / generation time (all jobs)", result["verification_over_generation"], "<= 0.35"),
        ("  median job", result["verification_over_generation_median_job"], ""),
        ("  jobs with >= 32 output tokens", result["verification_over_generation_jobs_32plus_tokens"], ""),
        ("  share of the pass served from the KV cache", result["verification_prefix_reused_share"], ""),
        ("honest outputs / false rejections", f"{result['honest_outputs']} / {result['false_rejections']}", "0"),
        ("honest max gap (nats) / exact argmax", f"{result['honest_max_gap_nats']} / {result['honest_exact_argmax_rate']}", ""),
        ("cheat detection rate", f"{result['cheat_detection_rate']:.4f} of {result['cheats']}", "1.0"),
        *((f"  {k}", f"{v:.3f}" if v is not None else "-", "") for k, v in result["cheat_detection_by_kind"].items()),
        ("best cheat score", result["cheat_max_score"], f"< {result['accept_threshold']}"),
        ("audit rate (network)", result["audit_rate"], ""),
        ("audit compute / generation compute", result["audit_compute_share"], "<= 0.15"),
        ("  same, 10% of workers cheating on 10% of jobs", result["audit_compute_share_with_10pct_cheaters"], ""),
        *((("2 threads: verification / generation time", result["two_threads"]["verification_over_generation"],
            "<= 0.35"),
           ("2 threads: audit compute / generation compute", result["two_threads"]["audit_compute_share"], "<= 0.15"),
           ("2 threads: generation tok/s", result["two_threads"]["generation_tok_s"], ""))
          if result.get("two_threads") else ()),
        ("P(catch 10% cheater within 100 jobs), new worker: simulated / exact",
         f"{result['catch_10pct_cheater_within_100_new_worker']} / {result['catch_exact_new_worker']}", ">= 0.99"),
        ("  same, after 1000 clean jobs: simulated / exact",
         f"{result['catch_10pct_cheater_within_100_after_1000_clean_jobs']} / {result['catch_exact_after_1000_clean_jobs']}",
         ""),
    ]
    for name, value, target in rows:
        table.add_row(name, str(value), target)
    console.print(table)
    if result.get("settings_gaps"):
        print_settings_table(result["settings_gaps"], console)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter jobs")
    parser.add_argument("--json", action="store_true", help="print the result object as the last line")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the worker's default)")
    parser.add_argument("--settings-only", action="store_true",
                        help="only the honest-gap matrix across engine settings (written to inference_settings.json)")
    args = parser.parse_args(argv)
    if args.settings_only:
        gaps = measure_settings_gaps(args.quick)
        write_result(gaps, SETTINGS_RESULTS)
        print_settings_table(gaps, Console(file=sys.stderr if args.json else sys.stdout, width=120))
        if args.json:
            print_result_line(gaps)
        return
    result = run(args.quick, args.threads)
    write_result(result, RESULTS)
    print_table(result, Console(file=sys.stderr if args.json else sys.stdout, width=120))
    if args.json:
        print_result_line(result)


if __name__ == "__main__":
    main()
