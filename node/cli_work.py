"""`magicoin jobs` and `magicoin tasks`: one account's own work and what it earned, read over JSON-RPC.

The account's transactions come from `muagic_getAccountWork` (a bounded scan
of recent blocks); each job or task they name is then read with
`muagic_getJob` / `muagic_getAnnotationTask`. Balance and recognition come
from `muagic_getAccount`. Methods a node may not serve yet
(`muagic_getAssignedTasks`, `muagic_getAnnotator`) are reported as such.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from node.cli_account import find_account, get_keystore_dir, keystore_dir_option, parse_address
from node.cli_rpc import RpcClient, format_muagic, format_ppm, parse_quantity, rpc_option, run_reporting_errors

CONTENT_PREVIEW = 48


def resolve_account(selector: str | None, keystore_dir: Path | None) -> bytes:
    """An address as given, or a keystore account by index (or the only one)."""
    if selector is not None and selector[:2].lower() == "0x":
        return parse_address(selector)
    return find_account(get_keystore_dir(keystore_dir), selector).address


def account_options(command):
    options = [
        click.option("--account", "selector", default=None,
                     help="Address, or index in `magicoin account list` (default: the only keystore account)."),
        keystore_dir_option,
        rpc_option,
        click.option("--from-block", type=click.IntRange(0), default=None,
                     help="First block to scan (default: the newest 10,000 blocks)."),
        click.option("--limit", type=click.IntRange(1), default=20, show_default=True,
                     help="Newest items shown per list."),
        click.option("--json", "as_json", is_flag=True, help="Print the gathered records as JSON."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def get_account_work(rpc: RpcClient, address: bytes, from_block: int | None) -> list[dict]:
    params: list[Any] = ["0x" + address.hex()]
    if from_block is not None:
        params.append(hex(from_block))
    return rpc.call("muagic_getAccountWork", *params)


def newest(items: list[dict], kind: str, limit: int) -> list[dict]:
    return [item for item in items if item["kind"] == kind][-limit:]


def echo_account(account: dict) -> None:
    click.echo(f"account      {account['address']}")
    click.echo(f"balance      {format_muagic(parse_quantity(account['balance']))}")
    click.echo(f"recognition  {format_muagic(parse_quantity(account['recognition']))}")


def echo_section(title: str, lines: list[str]) -> None:
    click.echo(f"\n{title} ({len(lines)})")
    for line in lines or ["  none"]:
        click.echo(line)


def refused(item: dict) -> str | None:
    if parse_quantity(item["receiptStatus"]) == 1:
        return None
    return f"  tx {item['txHash']}  block {parse_quantity(item['blockNumber'])}  refused: {item['failureReason']}"


# --- jobs ----------------------------------------------------------------------------------------------------

def describe_job(item: dict, job: dict | None) -> str:
    if job is None:
        return f"  {item['workId']}  block {parse_quantity(item['blockNumber'])}  (no record)"
    worker = job["worker"] or "-"
    return (f"  {job['jobId']}  block {parse_quantity(job['createdBlock'])}  {job['status']}  worker {worker}  "
            f"score {format_ppm(job['score'])}  reward {format_muagic(parse_quantity(job['reward']))}")


def show_jobs(rpc_url: str, address: bytes, from_block: int | None, limit: int, as_json: bool) -> None:
    with RpcClient(rpc_url) as rpc:
        account = rpc.call("muagic_getAccount", "0x" + address.hex())
        items = get_account_work(rpc, address, from_block)

        def read(kind: str) -> list[tuple[dict, dict | None]]:
            return [(item, None if item["workId"] is None or parse_quantity(item["receiptStatus"]) != 1
                     else rpc.call("muagic_getJob", item["workId"])) for item in newest(items, kind, limit)]

        requested, served = read("inference_request"), read("inference_result")
        offerings = newest(items, "offering", limit)
    if as_json:
        click.echo(json.dumps({"account": account, "requested": [job for _, job in requested],
                               "served": [job for _, job in served], "offerings": offerings}, indent=2))
        return
    echo_account(account)
    worker = account.get("worker")
    if worker:
        click.echo(f"worker       model {worker['model']}  capacity {parse_quantity(worker['capacity'])}  "
                   f"quality {format_ppm(worker['quality'])}  reliability {format_ppm(worker['reliability'])}")
    echo_section("jobs requested", [refused(item) or describe_job(item, job) for item, job in requested])
    echo_section("jobs served", [refused(item) or describe_job(item, job) for item, job in served])
    echo_section("offerings", [refused(item) or f"  {item['txHash']}  block {parse_quantity(item['blockNumber'])}"
                               f"  job {item['workId'] or '-'}" for item in offerings])


@click.command("jobs")
@account_options
def jobs_command(selector: str | None, keystore_dir: Path | None, rpc_url: str, from_block: int | None,
                 limit: int, as_json: bool) -> None:
    """Your inference jobs: those you requested and those you served, with status, score and reward."""
    run_reporting_errors(lambda: show_jobs(rpc_url, resolve_account(selector, keystore_dir), from_block, limit,
                                           as_json))


# --- annotation tasks ------------------------------------------------------------------------------------------

def preview(text: str | None) -> str:
    if text is None:
        return "?"
    return json.dumps(text if len(text) <= CONTENT_PREVIEW else text[:CONTENT_PREVIEW - 1] + "…")


def label_name(task: dict, index: Any) -> str:
    index = parse_quantity(index)
    labels = task.get("labels")
    if index is None:
        return "-"
    return labels[index] if labels and index < len(labels) else str(index)


def describe_created(item: dict, task: dict | None) -> str:
    if task is None:
        return f"  {item['workId']}  (no record)"
    answered = f"{len(task['annotations'])}/{parse_quantity(task['k'])} labels"
    return (f"  {task['taskId']}  block {parse_quantity(task['createdBlock'])}  {task['status']}  {answered}  "
            f"recognised {label_name(task, task['label'])}  {preview(task['content'])}")


def describe_given(item: dict, task: dict | None, own: str) -> str:
    if task is None:
        return f"  {item['workId']}  (no record)"
    mine = next((entry for entry in task["annotations"] if entry["address"] == own), None)
    given = label_name(task, mine["label"]) if mine else "?"
    outcome = task["status"]
    if task["status"] == "recognised":
        outcome = "agreed" if mine and mine["label"] == task["label"] else "disagreed"
    return f"  {task['taskId']}  your label {given}  task {task['status']}  ({outcome})  {preview(task['content'])}"


def describe_assigned(entry: Any) -> str:
    """A drawn task as muagic_getAssignedTasks gives it: a record with taskId, content, labels, deadline."""
    if isinstance(entry, str):
        return f"  {entry}"
    labels = ",".join(entry.get("labels") or [])
    deadline = parse_quantity(entry.get("deadlineBlock"))
    return f"  {entry.get('taskId')}  until block {deadline}  [{labels}]  {preview(entry.get('content'))}"


def describe_annotator(annotator: dict) -> str:
    """operator, gold answers right/seen, measured accuracy and vote weight (a two-label task)."""
    number = lambda name: parse_quantity(annotator.get(name))  # noqa: E731 - a local shorthand
    return (f"{annotator.get('operator')}  gold {number('goldCorrect')}/{number('goldSeen')} right  "
            f"accuracy {format_ppm(annotator.get('accuracyPpm'))}  weight {format_ppm(annotator.get('weightPpm'))}  "
            f"answered {number('tasksAnswered')}/{number('tasksAssigned')} drawn")


def show_tasks(rpc_url: str, address: bytes, from_block: int | None, limit: int, as_json: bool) -> None:
    own = "0x" + address.hex()
    with RpcClient(rpc_url) as rpc:
        account = rpc.call("muagic_getAccount", own)
        items = get_account_work(rpc, address, from_block)

        def read(kind: str) -> list[tuple[dict, dict | None]]:
            return [(item, None if parse_quantity(item["receiptStatus"]) != 1
                     else rpc.call("muagic_getAnnotationTask", item["workId"])) for item in newest(items, kind, limit)]

        created, given = read("annotation_task"), read("annotation")
        has_assigned, assigned = rpc.call_optional("muagic_getAssignedTasks", own)
        height = parse_quantity(rpc.call("eth_blockNumber"))
        has_annotator, annotator = rpc.call_optional("muagic_getAnnotator", own)
    if as_json:
        click.echo(json.dumps({"account": account, "annotator": annotator, "created": [t for _, t in created],
                               "annotated": [t for _, t in given], "assigned": assigned}, indent=2))
        return
    echo_account(account)
    if not has_annotator:
        click.echo("annotator    (this node does not serve muagic_getAnnotator)")
    elif annotator is None:
        click.echo("annotator    not registered (magicoin send register-annotator)")
    else:
        click.echo(f"annotator    {describe_annotator(annotator)}")
    echo_section("tasks created", [refused(item) or describe_created(item, task) for item, task in created])
    echo_section("annotations given", [refused(item) or describe_given(item, task, own) for item, task in given])
    if has_assigned:
        # A task past its deadline stays listed until the chain closes it; it can no longer be answered.
        answerable = [entry for entry in assigned or [] if isinstance(entry, str)
                      or (parse_quantity(entry.get("deadlineBlock")) or 0) > height]
        echo_section("tasks drawn for you", [describe_assigned(entry) for entry in answerable[:limit]])
    else:
        click.echo("\ntasks drawn for you: this node does not serve muagic_getAssignedTasks")


@click.command("tasks")
@account_options
def tasks_command(selector: str | None, keystore_dir: Path | None, rpc_url: str, from_block: int | None,
                  limit: int, as_json: bool) -> None:
    """Your annotation tasks: those you created, those you labelled, and those drawn for you."""
    run_reporting_errors(lambda: show_tasks(rpc_url, resolve_account(selector, keystore_dir), from_block, limit,
                                            as_json))


COMMANDS: list = [jobs_command, tasks_command]
