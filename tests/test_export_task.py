"""The task encoding, the domain and its split, as a user of the export would rely on them."""

import torch

from export.task import (decode_tokens, encode_text, has_carry, make_domain, problem_text, sequences)


def test_problem_text_matches_the_paper_format():
    assert problem_text(36, 28) == "36+28=00064"
    assert problem_text(43, 59) == "43+59=00102"
    assert problem_text(0, 0) == "00+00=00000"


def test_sequences_encode_every_problem_like_the_text():
    a, b = torch.tensor([36, 99, 5]), torch.tensor([28, 99, 7])
    rows = sequences(a, b)
    assert [decode_tokens(r) for r in rows] == ["36+28=00064", "99+99=00198", "05+07=00012"]
    assert encode_text("36+28=00064") == rows[0].tolist()


def test_domain_is_all_10000_problems_split_80_20_deterministically():
    d = make_domain(seed=0, test_fraction=0.2)
    pairs = set(zip(d.a.tolist(), d.b.tolist()))
    assert len(pairs) == 10_000
    assert len(d.train) == 8000 and len(d.test) == 2000
    assert not set(d.train.tolist()) & set(d.test.tolist())
    again = make_domain(seed=0, test_fraction=0.2)
    assert torch.equal(d.test, again.test)
    assert not torch.equal(d.test, make_domain(seed=1, test_fraction=0.2).test)


def test_carry_covers_units_and_tens():
    assert has_carry(torch.tensor([36, 53, 50, 11]), torch.tensor([28, 21, 60, 11])).tolist() == [True, False, True, False]
