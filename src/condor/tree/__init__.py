"""The World Knowledge Tree: the tags every question is written about.

- :mod:`~condor.tree.model`: ``KnowledgeTree`` and ``TreeNode``, paths, ids, version and changelog;
- :mod:`~condor.tree.io`: tree files (YAML/JSON, ``format: condor-tree v1``) and the shipped ``en``/``zh`` trees;
- :mod:`~condor.tree.condor_layout`: Condor's published ``{domain: {topic: [leaf]}}`` tag files;
- :mod:`~condor.tree.expand` / :mod:`~condor.tree.augment`: growth with a model, trending topics;
- :mod:`~condor.tree.update`: diff and merge (versioned updates);
- :mod:`~condor.tree.sample` / :mod:`~condor.tree.stats`: balanced leaf sampling and coverage counts.

Nothing here imports a model library at import time; datasketch and sentence-transformers load on use.
"""

from condor.tree.augment import AugmentReport, Placement, augment_tree, read_topics
from condor.tree.condor_layout import export_condor_tags, import_condor_tags, to_condor_tags
from condor.tree.expand import ExpandReport, TreeProblem, expand_tree, tree_from_roots
from condor.tree.io import FORMAT, SHIPPED_TREES, dumps_tree, load_tree, loads_tree, resolve_tree, save_tree
from condor.tree.model import (
    ChangelogEntry,
    DuplicateNodeError,
    KnowledgeTree,
    TreeError,
    TreeNode,
    format_path,
    node_id,
)
from condor.tree.sample import sample_leaves, tag_path_counts
from condor.tree.stats import tree_stats
from condor.tree.update import TreeDiff, diff_trees, merge_trees

__all__ = [
    "FORMAT",
    "SHIPPED_TREES",
    "AugmentReport",
    "ChangelogEntry",
    "DuplicateNodeError",
    "ExpandReport",
    "KnowledgeTree",
    "Placement",
    "TreeDiff",
    "TreeError",
    "TreeNode",
    "TreeProblem",
    "augment_tree",
    "diff_trees",
    "dumps_tree",
    "expand_tree",
    "export_condor_tags",
    "format_path",
    "import_condor_tags",
    "load_tree",
    "loads_tree",
    "merge_trees",
    "node_id",
    "read_topics",
    "resolve_tree",
    "sample_leaves",
    "save_tree",
    "tag_path_counts",
    "to_condor_tags",
    "tree_from_roots",
    "tree_stats",
]
