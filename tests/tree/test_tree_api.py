"""The public API of condor.tree: an explicit list, guarded so that changes to it are deliberate."""

from __future__ import annotations

import subprocess
import sys

import condor.tree

EXPECTED = {
    "FORMAT", "SHIPPED_TREES", "AugmentReport", "ChangelogEntry", "DuplicateNodeError", "ExpandReport",
    "KnowledgeTree", "Placement", "TreeDiff", "TreeError", "TreeNode", "TreeProblem", "augment_tree", "diff_trees",
    "dumps_tree", "expand_tree", "export_condor_tags", "format_path", "import_condor_tags", "load_tree", "loads_tree",
    "merge_trees", "node_id", "read_topics", "resolve_tree", "sample_leaves", "save_tree", "tag_path_counts",
    "to_condor_tags", "tree_from_roots", "tree_stats",
}


def test_exported_members():
    assert set(condor.tree.__all__) == EXPECTED
    for name in condor.tree.__all__:
        assert getattr(condor.tree, name) is not None


def test_import_stays_light():
    code = "import sys, condor.tree; print(sorted(m for m in ('numpy', 'datasketch', 'torch', 'sentence_transformers', 'llama_cpp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tree_error_is_a_value_error():
    assert issubclass(condor.tree.TreeError, ValueError)
