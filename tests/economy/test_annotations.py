"""Annotation rules: accuracy weight, the label rule, linked claims, and what a coalition can do (Hypothesis).

The property test drives the real `WorkRules` (task creation draws the
annotators, answers and deadlines resolve the task, claims are the payouts)
over a state in memory, for random populations of measured annotators.
"""
from __future__ import annotations

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from chain.abc import BlockContext, TxContext
from chain.db import MemoryDB
from chain.exceptions import WorkRejected
from chain.payloads import Annotation, AnnotationTask, RegisterAnnotator, compute_work_id
from chain.state import State
from economy import (
    AccuracyTerms, EconomyParams, TaskStatus, WorkRules, compute_accuracy_ppm, compute_label_permutation,
    compute_linked_groups, compute_recognised_label, compute_shared_claims, compute_vote_weight_ppm, get_annotator,
    get_claims, get_task,
)
from economy.audit import AuditPolicy
from economy.records import replace_record
from economy.store import clear_claims, set_annotator

PPM = 1_000_000
TERMS = AccuracyTerms(annotator_prior_correct=1, annotator_prior_wrong=1, annotator_min_gold=3)


# --- the maths ------------------------------------------------------------------------------------------------

def test_accuracy_is_the_beta_posterior_mean_and_weight_is_accuracy_above_chance():
    assert compute_accuracy_ppm(0, 0, TERMS) == 500_000  # the prior alone: a coin
    assert compute_accuracy_ppm(3, 3, TERMS) == 800_000
    assert compute_vote_weight_ppm(3, 3, 2, TERMS) == 600_000  # (0.8 - 1/2) / (1 - 1/2)
    assert compute_vote_weight_ppm(3, 3, 4, TERMS) == 733_333  # (0.8 - 1/4) / (3/4)
    assert compute_vote_weight_ppm(2, 2, 2, TERMS) == 0  # below annotator_min_gold: no weight yet
    assert compute_vote_weight_ppm(1, 3, 2, TERMS) == 0  # (1+1)/5 = 0.4 is below chance: weight 0, never negative
    assert compute_vote_weight_ppm(1000, 1000, 2, TERMS) < PPM  # the prior keeps even a perfect record below 1


def test_a_label_needs_more_than_half_of_the_drawn_weight():
    assert compute_recognised_label([(0, 5), (1, 5)], 10) is None
    assert compute_recognised_label([(0, 6), (1, 4)], 10) == 0
    assert compute_recognised_label([(0, 5)], 12) is None  # a drawn annotator that did not answer still counts
    assert compute_recognised_label([(0, 0), (1, 0)], 0) is None  # nobody weighs anything: no majority


def test_linked_groups_are_transitive_and_share_one_claim():
    cohorts = [(b"a", frozenset({5})), (b"b", frozenset({7})), (b"c", frozenset({7, 5})), (b"d", frozenset({9}))]
    assert compute_linked_groups(cohorts) == [(b"a", b"b", b"c"), (b"d",)]
    claims = dict(compute_shared_claims(cohorts, 900))
    assert claims == {b"a": 300, b"b": 300, b"c": 300, b"d": 900}


def test_gold_labels_are_permuted_by_the_task_id():
    orders = {compute_label_permutation(keccak(bytes([i])), 4) for i in range(40)}
    assert len(orders) > 10 and all(sorted(o) == [0, 1, 2, 3] for o in orders)


# --- the rules over a state ------------------------------------------------------------------------------------

CREATOR = b"\xc0" * 20


class Population:
    """Annotators registered in distinct blocks (unlinked), with gold records set directly."""

    def __init__(self, records: dict[bytes, tuple[int, int]], params: EconomyParams = EconomyParams()) -> None:
        self.state = State(MemoryDB())
        self.rules = WorkRules(params, AuditPolicy(base_rate_ppm=0, probation_jobs=0, caught_window_jobs=0,
                                                   failure_rate_step_ppm=0))
        for number, (address, (seen, correct)) in enumerate(records.items(), start=1):
            self.rules.apply_work(self.state, self.block(number), TxContext(address, 0, keccak(address), 0),
                                  "register_annotator", RegisterAnnotator(b"person"))
            record = get_annotator(self.state, address)
            set_annotator(self.state, address, replace_record(record, gold_seen=seen, gold_correct=correct))
        self.nonce = 0

    @staticmethod
    def block(number: int) -> BlockContext:
        return BlockContext(number, 1_000 * number, b"\x00" * 20, keccak(b"parent %d" % number))

    def post(self, number: int, labels: int = 2, k: int = 3) -> bytes:
        tx = TxContext(CREATOR, self.nonce, keccak(b"task %d" % self.nonce), 0)
        self.nonce += 1
        self.rules.apply_work(self.state, self.block(number), tx, "annotation_task",
                              AnnotationTask(b"content", [b"label %d" % i for i in range(labels)], k))
        return compute_work_id(CREATOR, tx.nonce)

    def answer(self, number: int, address: bytes, task_id: bytes, label: int) -> None:
        self.rules.apply_work(self.state, self.block(number), TxContext(address, 1, keccak(address + task_id), 0),
                              "annotation", Annotation(task_id, label))

    def close(self, number: int, task_id: bytes) -> tuple:
        """Run the task's deadline; returns (task record, {address: claimed units})."""
        task = get_task(self.state, task_id)
        if task.status == TaskStatus.OPEN:
            self.rules.process_task_deadlines(self.state, self.block(task.deadline_block))
        claims = {}
        for claim in get_claims(self.state):
            claims[claim.address] = claims.get(claim.address, 0) + claim.units
        clear_claims(self.state)
        return get_task(self.state, task_id), claims


def address(kind: str, index: int) -> bytes:
    return keccak(b"%s %d" % (kind.encode(), index))[:20]


def test_only_drawn_annotators_may_answer_and_weightless_keys_are_never_drawn():
    honest = {address("honest", i): (10, 10) for i in range(3)}
    sybils = {address("sybil", i): (0, 0) for i in range(5)}
    population = Population(honest | sybils)
    task_id = population.post(100, k=3)
    drawn = {seat.address for seat in get_task(population.state, task_id).annotators}
    assert drawn == set(honest)
    for sybil in sybils:
        with pytest.raises(WorkRejected, match="not drawn for this task"):
            population.answer(101, sybil, task_id, 1)


def test_a_task_nobody_measured_can_label_is_refused():
    population = Population({address("sybil", i): (0, 0) for i in range(3)})
    with pytest.raises(WorkRejected, match="no eligible annotator"):
        population.post(100)


STRATEGIES = ("always_wrong", "wrong_live_right_gold", "abstain", "copy_majority")


def coalition_gold_record(strategy: str, seen: int, honest_correct: int) -> tuple[int, int]:
    """What the coalition's gold record looks like under each strategy (answering gold right is the best case)."""
    if strategy == "always_wrong":
        return seen, 0
    if strategy == "abstain":
        return seen, honest_correct  # abstains on live tasks only; on gold as good as an honest annotator
    return seen, seen  # right on gold (or copying the honest majority there): a perfect record


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    honest=st.lists(st.tuples(st.integers(3, 30), st.integers(60, 100)), min_size=2, max_size=8),
    coalition_size=st.integers(1, 6),
    coalition_seen=st.integers(3, 30),
    strategy=st.sampled_from(STRATEGIES),
    sybils=st.integers(0, 5),
    labels=st.integers(2, 4),
    k=st.integers(1, 5),
)
def test_no_coalition_strategy_beats_the_draw_and_keys_without_gold_earn_nothing(
        honest, coalition_size, coalition_seen, strategy, sybils, labels, k):
    records = {address("honest", i): (seen, seen * percent // 100) for i, (seen, percent) in enumerate(honest)}
    coalition = {address("coalition", i): coalition_gold_record(strategy, coalition_seen, coalition_seen * 9 // 10)
                 for i in range(coalition_size)}
    no_gold = {address("sybil", i): (0, 0) for i in range(sybils)}
    weights = {a: compute_vote_weight_ppm(c, s, labels, TERMS) for a, (s, c) in (records | coalition).items()}
    coalition_weight = sum(weights[a] for a in coalition)
    total_weight = sum(weights.values())
    assume(total_weight > 0 and 3 * coalition_weight < total_weight)  # a coalition under 1/3 of accuracy-weight
    population = Population(records | coalition | no_gold)
    truth, wrong = 0, 1
    wrong_recognised = coalition_majority = 0
    trials = 40
    for trial in range(trials):
        number = 1_000 + 100 * trial
        task_id = population.post(number, labels, k)
        seats = get_task(population.state, task_id).annotators
        drawn_coalition = sum(s.weight for s in seats if s.address in coalition)
        coalition_majority += 2 * drawn_coalition > sum(s.weight for s in seats)
        for seat in sorted(seats, key=lambda s: s.address in coalition):  # the coalition answers last, seeing all
            if seat.address not in coalition:
                population.answer(number + 1, seat.address, task_id, truth)
            elif strategy in ("always_wrong", "wrong_live_right_gold"):
                population.answer(number + 1, seat.address, task_id, wrong)
            elif strategy == "copy_majority":
                task = get_task(population.state, task_id)
                if task.status == TaskStatus.OPEN:
                    votes = [a.label_index for a in task.annotations] or [truth]
                    population.answer(number + 1, seat.address, task_id, max(set(votes), key=votes.count))
        task, claims = population.close(number + 1, task_id)
        is_wrong = task.status == TaskStatus.RECOGNISED and task.label_index != truth
        wrong_recognised += is_wrong
        # Pathwise: a wrong label needs the coalition to hold more than half of the drawn weight.
        assert not is_wrong or 2 * drawn_coalition > sum(s.weight for s in seats)
        assert not set(claims) & set(no_gold), "a key with no gold record earned"
        assert all(weights[a] > 0 for a in claims), "a weightless vote earned"
    assert wrong_recognised <= coalition_majority
