"""The chain walker finds any single edit, deletion or swap in a chain of any length."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from server.audit.rules import GENESIS_HASH, ChainWalker, entry_hash


def make_chain(actions: list[str]) -> list[dict[str, Any]]:
    chain, prev = [], GENESIS_HASH
    for seq, action in enumerate(actions, start=1):
        entry: dict[str, Any] = {
            "seq": seq, "at": dt.datetime(2026, 11, 22, 10, 0, seq % 60, tzinfo=dt.UTC),
            "actor_user_id": uuid.UUID(int=seq),
            "actor_role": "physician", "action": action, "object_type": "record", "object_id": str(seq),
            "subject_patient_id": None, "outcome": "success", "request_id": None, "ip_hash": None,
            "detail": {"n": seq}, "prev_hash": prev,
        }
        entry["hash"] = entry_hash(entry)
        prev = entry["hash"]
        chain.append(entry)
    return chain


def walk(chain: list[dict[str, Any]], checkpoints: dict[int, str] | None = None) -> tuple[int | None, ChainWalker]:
    walker = ChainWalker(checkpoints)
    for entry in chain:
        broken = walker.feed(entry)
        if broken:
            return broken.seq, walker
    return None, walker


actions = st.lists(st.sampled_from(["record.read", "consent.sign", "auth.login"]), min_size=2, max_size=30)


@given(actions)
def test_chain_intact_verifies(names: list[str]) -> None:
    chain = make_chain(names)
    broken, walker = walk(chain)
    assert broken is None
    assert walker.finish(head_seq=len(chain), head_hash=chain[-1]["hash"]) is None


@given(actions, st.data())
def test_chain_edit_is_found_at_the_edited_entry(names: list[str], data: st.DataObject) -> None:
    chain = make_chain(names)
    index = data.draw(st.integers(0, len(chain) - 1))
    chain[index]["outcome"] = "failure"
    assert walk(chain)[0] == index + 1


@given(actions, st.data())
def test_chain_deletion_is_found(names: list[str], data: st.DataObject) -> None:
    chain = make_chain(names)
    index = data.draw(st.integers(0, len(chain) - 2))
    del chain[index]
    assert walk(chain)[0] == index + 1


@given(actions, st.data())
def test_chain_swap_is_found_at_the_first_swapped_place(names: list[str], data: st.DataObject) -> None:
    chain = make_chain(names)
    i = data.draw(st.integers(0, len(chain) - 2))
    j = data.draw(st.integers(i + 1, len(chain) - 1))
    chain[i], chain[j] = chain[j], chain[i]
    assert walk(chain)[0] == i + 1


def test_chain_truncated_tail_is_found_by_the_head() -> None:
    chain = make_chain(["a"] * 5)
    broken, walker = walk(chain[:3])
    assert broken is None
    found = walker.finish(head_seq=5, head_hash=chain[-1]["hash"])
    assert found is not None
    assert found.seq == 4


def test_chain_checkpoint_beyond_the_end_is_found() -> None:
    chain = make_chain(["a"] * 5)
    _, walker = walk(chain[:3], {5: chain[4]["hash"]})
    found = walker.finish(head_seq=3, head_hash=chain[2]["hash"])
    assert found is not None
    assert "checkpoint" in found.reason


def test_chain_hash_is_independent_of_key_order() -> None:
    entry = make_chain(["a"])[0]
    assert entry_hash(dict(reversed(list(entry.items())))) == entry["hash"]
