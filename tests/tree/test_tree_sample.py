"""Balanced sampling: uniform over leaves (checked with a chi-square test), weights, gaps, seeds, languages."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from condor.tree.model import KnowledgeTree, TreeError, TreeNode
from condor.tree.sample import parse_domain_weights, sample_leaves, tag_path_counts


def unbalanced_tree() -> KnowledgeTree:
    """One domain with 60 leaves and four with 2: a domain-uniform sampler over-samples the small ones 7x."""
    big = TreeNode("Big", children=[TreeNode(f"Topic {t}", children=[TreeNode(f"Leaf {t}.{i}") for i in range(12)]) for t in range(5)])
    small = [TreeNode(f"Small {d}", children=[TreeNode(f"S{d} leaf {i}") for i in range(2)]) for d in range(4)]
    return KnowledgeTree("unbalanced", domains=[big, *small])


def chi_square(counts: Counter, expected: dict) -> float:
    return sum((counts.get(key, 0) - value) ** 2 / value for key, value in expected.items())


def critical_value(dof: int, alpha: float = 0.001) -> float:
    try:
        from scipy.stats import chi2
    except ImportError:  # Wilson-Hilferty approximation of the chi-square quantile
        z = 3.090232  # standard normal quantile for 1 - 0.001
        return dof * (1 - 2 / (9 * dof) + z * (2 / (9 * dof)) ** 0.5) ** 3
    return float(chi2.ppf(1 - alpha, dof))


def domain_uniform_sample(tree: KnowledgeTree, n: int, seed: int) -> list:
    """The sampler the issue warns against: a domain first, then a leaf in it."""
    rng = random.Random(seed)
    by_domain: dict[str, list] = {}
    for path in tree.leaves():
        by_domain.setdefault(path[0], []).append(path)
    chosen: list = []
    while len(chosen) < n:
        leaf = rng.choice(by_domain[rng.choice(sorted(by_domain))])
        if leaf not in chosen:
            chosen.append(leaf)
    return chosen


def test_uniform_over_leaves_passes_chi_square_and_domain_uniform_fails():
    tree = unbalanced_tree()
    leaves = tree.leaves()
    rounds, k = 400, 10
    expected = {leaf: rounds * k / len(leaves) for leaf in leaves}
    limit = critical_value(len(leaves) - 1)

    ours = Counter(leaf for seed in range(rounds) for leaf in sample_leaves(tree, k, seed=seed))
    naive = Counter(leaf for seed in range(rounds) for leaf in domain_uniform_sample(tree, k, seed))
    assert chi_square(ours, expected) < limit
    assert chi_square(naive, expected) > limit * 5
    # The domains' shares follow their leaf counts: 60 of 68 leaves are in Big.
    big_share = sum(c for leaf, c in ours.items() if leaf[0] == "Big") / (rounds * k)
    assert abs(big_share - 60 / 68) < 0.02


def test_domain_weights_multiply_each_leafs_chance():
    tree = unbalanced_tree()
    weights = {"Small 0": 3.0, "Big": 0.5, "Small 3": 0}
    draws = Counter(sample_leaves(tree, 1, seed=seed, domain_weights=weights)[0][0] for seed in range(1500))
    mass = {"Big": 60 * 0.5, "Small 0": 2 * 3.0, "Small 1": 2, "Small 2": 2}
    total = sum(mass.values())
    expected = {name: 1500 * m / total for name, m in mass.items()}
    assert "Small 3" not in draws
    assert chi_square(draws, expected) < critical_value(len(mass) - 1)
    with pytest.raises(TreeError, match="name no domain"):
        sample_leaves(tree, 1, domain_weights={"Nope": 1})
    with pytest.raises(TreeError, match="finite and >= 0"):
        sample_leaves(tree, 1, domain_weights={"Big": -1})


def test_inverse_frequency_fills_gaps(tmp_path):
    tree = unbalanced_tree()
    leaves = tree.leaves()
    unused = set(leaves[::10])  # 7 leaves never seen in the dataset
    dataset = tmp_path / "data.jsonl"
    with dataset.open("w", encoding="utf-8") as handle:
        for leaf in leaves:
            if leaf in unused:
                continue
            for i in range(30):
                # Both field placements and both spellings of a path occur in real datasets.
                record = {"tag_path": list(leaf)} if i % 2 else {"meta": {"tag_path": " > ".join(leaf)}}
                handle.write(json.dumps(record) + "\n")
        handle.write(json.dumps({"question": "no tag"}) + "\n\n")
    counts, missing = tag_path_counts(dataset)
    assert missing == 1 and counts[leaves[1]] == 30 and leaves[0] not in counts
    # Weights 1 for the 7 unused leaves and 1/31 for the 61 used ones: one draw is unused with p = 7 / (7 + 61/31).
    share = sum(sample_leaves(tree, 1, seed=seed, counts=counts)[0] in unused for seed in range(1000)) / 1000
    assert abs(share - 7 / (7 + 61 / 31)) < 0.05
    uniform_share = sum(sample_leaves(tree, 1, seed=seed)[0] in unused for seed in range(1000)) / 1000
    assert abs(uniform_share - 7 / 68) < 0.04


def test_seeded_reproducible_and_without_replacement():
    tree = unbalanced_tree()
    assert sample_leaves(tree, 20, seed=5) == sample_leaves(tree, 20, seed=5)
    assert sample_leaves(tree, 20, seed=5) != sample_leaves(tree, 20, seed=6)
    assert len(set(sample_leaves(tree, 68, seed=1))) == 68
    weighted = sample_leaves(tree, 30, seed=1, domain_weights={"Small 1": 5})
    assert len(set(weighted)) == 30
    # Beyond the number of leaves, every leaf is used once per full pass.
    over = Counter(sample_leaves(tree, 150, seed=2))
    assert set(over.values()) <= {2, 3} and sum(over.values()) == 150
    assert len(sample_leaves(tree, 150, seed=2, domain_weights={"Big": 2})) == 150
    assert sample_leaves(tree, 0) == []


def test_per_language_sampling():
    tree = KnowledgeTree("both", "en", domains=[TreeNode("Law", children=[TreeNode("Contracts")]), TreeNode("法律", language="zh", children=[TreeNode("合同"), TreeNode("婚姻法")])])
    assert sorted(sample_leaves(tree, 2, language="zh")) == [("法律", "合同"), ("法律", "婚姻法")]
    assert sample_leaves(tree, 1, language="en") == [("Law", "Contracts")]
    with pytest.raises(TreeError, match="no leaves to sample in language 'fr'"):
        sample_leaves(tree, 1, language="fr")


def test_weights_text_and_bad_datasets(tmp_path):
    assert parse_domain_weights("Health=2, Law=0.5") == {"Health": 2.0, "Law": 0.5}
    assert parse_domain_weights('{"A=B": 1}') == {"A=B": 1.0}
    for bad in ("Health", "Health=lots", "{nope"):
        with pytest.raises(TreeError):
            parse_domain_weights(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"tag_path": ["A"]}\n{oops\n', encoding="utf-8")
    with pytest.raises(TreeError, match=r"broken\.jsonl, line 2: not valid JSON"):
        tag_path_counts(broken)
    with pytest.raises(TreeError, match="cannot read dataset"):
        tag_path_counts(tmp_path / "absent.jsonl")
