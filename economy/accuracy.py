"""Annotator accuracy and vote weight, and the label rule: pure integer maths.

An annotator's accuracy is measured on gold tasks (known answers the chain mixes
in) with a Beta prior, so one lucky answer proves little; its vote weight is how
far that accuracy is above chance for the task's number of labels. Validator
recognition plays no part: a careful person outweighs a careless model.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

PPM = 1_000_000


class AccuracyTerms(NamedTuple):
    """The genesis params the weight depends on (`EconomyParams` has the same-named fields)."""

    annotator_prior_correct: int = 1
    annotator_prior_wrong: int = 1
    annotator_min_gold: int = 3


def compute_accuracy_ppm(gold_correct: int, gold_seen: int, terms: AccuracyTerms) -> int:
    """(correct + prior_correct) / (seen + prior_correct + prior_wrong), in ppm (floored): the Beta posterior mean."""
    prior_correct, prior_wrong = terms.annotator_prior_correct, terms.annotator_prior_wrong
    return PPM * (gold_correct + prior_correct) // (gold_seen + prior_correct + prior_wrong)


def compute_vote_weight_ppm(gold_correct: int, gold_seen: int, labels: int, terms: AccuracyTerms) -> int:
    """max(0, accuracy - 1/L) / (1 - 1/L) in ppm for a task of L labels; 0 below `annotator_min_gold` answers.

    Chance-level accuracy (guessing) weighs nothing, a perfect record weighs
    1,000,000. Computed from the exact fraction, (L(c + pc) - (s + pc + pw)) /
    ((L - 1)(s + pc + pw)), so the floor is taken once.
    """
    if gold_seen < terms.annotator_min_gold or labels < 2:
        return 0
    total = gold_seen + terms.annotator_prior_correct + terms.annotator_prior_wrong
    above_chance = labels * (gold_correct + terms.annotator_prior_correct) - total
    if above_chance <= 0:
        return 0
    return PPM * above_chance // ((labels - 1) * total)


def compute_recognised_label(votes: Iterable[tuple[int, int]], total_weight: int) -> int | None:
    """The label carrying more than half of `total_weight` (the drawn annotators' weight, answered or not).

    None when no label does, or when the drawn annotators weigh nothing at all.
    """
    if total_weight <= 0:
        return None
    by_label: dict[int, int] = {}
    for label, weight in votes:
        by_label[label] = by_label.get(label, 0) + weight
    for label, weight in by_label.items():
        if 2 * weight > total_weight:
            return label
    return None


def compute_linked_groups(cohorts: Iterable[tuple[bytes, frozenset[int]]]) -> list[tuple[bytes, ...]]:
    """Accounts grouped by shared cohort blocks (created together), transitively, in input order.

    `cohorts` gives each account the blocks it was created in (its annotator
    registration, its first transaction); two accounts sharing a block are
    linked, and so is anything linked to either of them.
    """
    cohorts = list(cohorts)
    group_of = list(range(len(cohorts)))  # each account's group: the index of the group's first account
    for index, (_, blocks) in enumerate(cohorts):
        for earlier in range(index):
            if blocks & cohorts[earlier][1] and group_of[earlier] != group_of[index]:
                old, new = sorted((group_of[earlier], group_of[index]), reverse=True)
                group_of = [new if g == old else g for g in group_of]
    groups: dict[int, list[bytes]] = {}
    for index, (address, _) in enumerate(cohorts):
        groups.setdefault(group_of[index], []).append(address)
    return [tuple(members) for _, members in sorted(groups.items())]


def compute_shared_claims(agreeing: Iterable[tuple[bytes, frozenset[int]]], units: int) -> list[tuple[bytes, int]]:
    """One claim of `units` per group of linked agreeing annotators, split evenly inside the group (floored).

    Linked keys agreeing with each other earn what one annotator would: making
    more keys together buys nothing.
    """
    claims = []
    for group in compute_linked_groups(agreeing):
        share = units // len(group)
        claims.extend((address, share) for address in group if share > 0)
    return claims
