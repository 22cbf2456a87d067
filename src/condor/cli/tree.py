"""``condor tree ...``: look at, convert, grow, compare, merge and sample knowledge trees.

Each command is a thin call into :mod:`condor.tree`. Trees are named with ``--tree NAME_OR_PATH``
(``en`` and ``zh`` are shipped); load warnings go to stderr, errors end in one line, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from condor.cli.options import ModelFlags, fail, model_options

tree_app = typer.Typer(help="World Knowledge Tree: show, convert, expand, augment, diff, merge and sample.", no_args_is_help=True)

TreeOpt = Annotated[str, typer.Option("--tree", "-t", help="Shipped tree (en, zh) or a tree file.")]
OutOpt = Annotated[Path, typer.Option("--output", "-o", help="Where to write the result (.yaml or .json).")]
ProblemsOpt = Annotated[Optional[Path], typer.Option("--problems", help="Write every model-answer problem here (JSONL).")]


def _load(spec: str):
    from condor.tree.io import resolve_tree
    from condor.tree.model import TreeError

    warnings: list[str] = []
    try:
        tree = resolve_tree(spec, warnings)
    except TreeError as exc:
        fail(str(exc))
    for warning in warnings:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    return tree


def _write(path: Path, writer: Any, what: Any) -> None:
    try:
        writer(what, path)
    except OSError as exc:
        from condor.cli.runtime import describe_os_error

        fail(f"{path}: cannot write: {describe_os_error(exc)}")


def _write_text(path: Path, text: str) -> None:
    _write(path, lambda content, target: target.write_text(content, encoding="utf-8"), text)


def _not_the_input(source: Path | str, output: Path) -> None:
    """Refuse to write a conversion over the file it reads: the original would be gone (an input is never
    its own output). Growing a tree in place (expand, augment) keeps its history and stays allowed."""
    source = Path(source)
    if source.exists() and output.exists() and source.resolve() == output.resolve():
        fail(f"{output} is the file being read; write the result elsewhere (-o), then replace the original if you mean to")


def _save(tree: Any, path: Path) -> None:
    from condor.tree.io import save_tree

    _write(path, save_tree, tree)


@tree_app.command("show")
def show(
    tree: TreeOpt = "en",
    depth: Annotated[Optional[int], typer.Option("--depth", "-d", min=1, help="Show this many levels.")] = None,
    ids: Annotated[bool, typer.Option("--ids", help="Show each node's stable id.")] = False,
) -> None:
    """Print the tree as an indented outline."""
    from condor.tree.view import outline

    for line in outline(_load(tree), depth=depth, ids=ids):
        typer.echo(line)


@tree_app.command("stats")
def stats(
    tree: TreeOpt = "en",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Count domains, nodes and leaves per level, domain and language."""
    from condor.tree.stats import tree_stats
    from condor.tree.view import stats_lines

    result = tree_stats(_load(tree))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        for line in stats_lines(result):
            typer.echo(line)


@tree_app.command("import")
def import_tags(
    # "\[" keeps rich from reading "[leaf, ...]" as a style tag and dropping it from the help.
    tags: Annotated[Path, typer.Argument(help=r"Condor-layout tag file: {domain: {topic: \[leaf, ...]}}.")],
    output: OutOpt,
    name: Annotated[Optional[str], typer.Option("--name", help="Tree name (default: the file name).")] = None,
    lang: Annotated[str, typer.Option("--lang", help="Language of the tags.")] = "en",
) -> None:
    """Read a Condor-layout tag file into a versioned tree file."""
    from condor.tree.condor_layout import import_condor_tags
    from condor.tree.model import TreeError

    _not_the_input(tags, output)
    warnings: list[str] = []
    try:
        result = import_condor_tags(tags, name=name, language=lang, warnings=warnings)
    except TreeError as exc:
        fail(str(exc))
    for warning in warnings:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    _save(result, output)
    typer.echo(f"imported {len(result.leaves())} leaves in {len(result.domains)} domains -> {output}")


@tree_app.command("export")
def export(
    tree: Annotated[str, typer.Argument(help="Shipped tree (en, zh) or a tree file.")],
    output: OutOpt,
    fmt: Annotated[str, typer.Option("--format", "-f", help="condor (Condor's tag layout), json or yaml.")] = "condor",
) -> None:
    """Write a tree as Condor-layout tags, or as a JSON or YAML tree file."""
    from condor.tree.condor_layout import export_condor_tags
    from condor.tree.io import SHIPPED_TREES, dumps_tree

    if tree not in SHIPPED_TREES:
        _not_the_input(tree, output)
    loaded = _load(tree)
    if fmt == "condor":
        _write(output, export_condor_tags, loaded)
    elif fmt in ("json", "yaml"):
        _write_text(output, dumps_tree(loaded, fmt))
    else:
        fail(f"unknown format {fmt!r}; choose condor, json or yaml")
    typer.echo(f"wrote {len(loaded.leaves())} leaves as {fmt} -> {output}")


def _backend_config(flags: ModelFlags) -> tuple[Any, Optional[Path]]:
    cfg = flags.load()
    return cfg, Path(cfg.cache) if cfg.cache else None


def _structured(cfg: Any) -> Optional[bool]:
    return {"on": True, "off": False}.get(cfg.llm.structured)


def _report_problems(problems: list, path: Optional[Path]) -> None:
    """The first problems on stderr; all of them, as JSON lines, in ``path`` when given."""
    if path is not None:
        _write_text(path, "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in problems))
    for problem in problems[:20]:
        typer.secho(f"problem: {problem}", err=True, fg=typer.colors.YELLOW)
    if len(problems) > 20:
        typer.secho(f"... and {len(problems) - 20} more problems", err=True, fg=typer.colors.YELLOW)


@tree_app.command("expand")
@model_options
def expand(
    output: OutOpt,
    roots: Annotated[Optional[Path], typer.Option("--roots", help="Text file of root tags, one per line.")] = None,
    tree: Annotated[Optional[str], typer.Option("--tree", "-t", help="Tree to grow (shipped name or file).")] = None,
    depth: Annotated[int, typer.Option("--depth", min=1, max=6, help="Levels to add below the current leaves.")] = 2,
    breadth: Annotated[int, typer.Option("--breadth", min=1, max=50, help="Sub-topics asked for per node.")] = 8,
    under: Annotated[Optional[str], typer.Option("--under", help="Only grow below this path ('A > B').")] = None,
    lang: Annotated[str, typer.Option("--lang", help="Language of the root tags (with --roots).")] = "en",
    problems: ProblemsOpt = None,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """Grow a tree with the model: sub-topics for every leaf, to a depth and breadth."""
    from condor.cli.runtime import run_job
    from condor.llm.registry import backend_session
    from condor.tree.expand import expand_tree, tree_from_roots
    from condor.tree.model import TreeError, parse_path

    if (roots is None) == (tree is None):
        fail("give exactly one of --roots FILE or --tree NAME_OR_PATH")
    if roots is not None:
        from condor.documents import decode_utf8

        try:
            lines = decode_utf8(roots.read_bytes(), roots, TreeError).splitlines()
            start = tree_from_roots(lines, name=roots.stem, language=lang)
        except OSError as exc:
            fail(f"{roots}: cannot read ({exc.strerror or exc})")
        except TreeError as exc:
            fail(str(exc) if str(exc).startswith(str(roots)) else f"{roots}: {exc}")
    else:
        start = _load(tree)
    branch = parse_path(under or "")
    if start.find(branch) is None:
        # Checked before the backend opens: loading a model only to fail on a typo wastes a minute.
        fail(f"no node at {under!r} in tree {start.name!r}; see 'condor tree show'")
    cfg, cache_path = _backend_config(flags)

    async def job():
        async with backend_session(cfg.llm, cache_path) as llm:
            return await expand_tree(
                start, llm, depth=depth, breadth=breadth, under=branch, structured=_structured(cfg),
                max_tokens=cfg.llm.max_tokens, temperature=cfg.llm.temperature, seed=cfg.llm.seed,
            )

    report = run_job(job)
    _report_problems(report.problems, problems)
    _save(start, output)
    typer.echo(
        f"added {len(report.added)} tags ({report.duplicates} near-duplicates dropped, {len(report.problems)} problems) "
        f"in {report.requests} requests -> {output} (version {start.version})"
    )


@tree_app.command("augment")
@model_options
def augment(
    topics: Annotated[Path, typer.Option("--topics", help="Trending topics, one per line.")],
    output: OutOpt,
    tree: TreeOpt = "en",
    review: Annotated[Optional[Path], typer.Option("--review", help="Write topics that fit nowhere here (.jsonl keeps reasons).")] = None,
    placement: Annotated[str, typer.Option("--placement", help="model (falls back to embeddings) or embeddings only.")] = "model",
    threshold: Annotated[float, typer.Option("--threshold", min=-1.0, max=1.0, help="Least cosine similarity for embedding placement.")] = 0.3,
    no_embeddings: Annotated[bool, typer.Option("--no-embeddings", help="Never fall back to embeddings.")] = False,
    problems: ProblemsOpt = None,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """File trending topics under the best-fitting branches; the rest go to a review list."""
    from condor.cli.runtime import run_job
    from condor.llm.registry import backend_session
    from condor.tree.augment import augment_tree, read_topics, write_review
    from condor.tree.model import TreeError

    if placement not in ("model", "embeddings"):
        fail(f"unknown placement {placement!r}; choose model or embeddings")
    if placement == "embeddings" and no_embeddings:
        fail("--placement embeddings and --no-embeddings contradict each other")
    target = _load(tree)
    try:
        topic_list = read_topics(topics)
    except TreeError as exc:
        fail(str(exc))
    if not topic_list:
        fail(f"{topics}: no topics (one per line)")
    cfg, cache_path = _backend_config(flags)

    async def place(llm):
        return await augment_tree(
            target, topic_list, llm, use_embeddings=not no_embeddings, threshold=threshold,
            structured=_structured(cfg), max_tokens=flags.max_tokens or 64, source=topics.name,
        )

    async def job():
        if placement != "model":
            return await place(None)
        async with backend_session(cfg.llm, cache_path) as llm:
            return await place(llm)

    report = run_job(job)
    _report_problems(report.problems, problems)
    _save(target, output)
    if review is not None:
        _write(review, write_review, report.review)
    elif report.review:
        typer.echo("topics for review (use --review FILE to keep them):", err=True)
        for item in report.review:
            typer.echo(f"  {item.topic}: {item.reason}", err=True)
    typer.echo(
        f"placed {len(report.placed)} topics, {len(report.review)} for review, "
        f"{len(report.already_present)} already present -> {output} (version {target.version})"
    )


@tree_app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="The earlier tree (shipped name or file).")],
    new: Annotated[str, typer.Argument(help="The later tree.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """List the tag paths one tree adds to or removes from another."""
    from condor.tree.update import diff_trees

    before, after = _load(old), _load(new)
    result = diff_trees(before, after)
    if as_json:
        typer.echo(json.dumps({"old_version": before.version, "new_version": after.version, **result.to_dict()}, ensure_ascii=False, indent=2))
        return
    for line in result.lines():
        typer.echo(line)
    typer.echo(
        f"{len(result.added)} added ({result.added_leaves} leaves), {len(result.removed)} removed "
        f"({result.removed_leaves} leaves); version {before.version} -> {after.version}"
    )


@tree_app.command("merge")
def merge(
    base: Annotated[str, typer.Argument(help="The tree whose names and fields win (shipped name or file).")],
    other: Annotated[str, typer.Argument(help="The tree whose missing nodes are added.")],
    output: OutOpt,
    name: Annotated[Optional[str], typer.Option("--name", help="Name of the merged tree (default: the first's).")] = None,
) -> None:
    """Merge two trees into their union, keeping provenance and bumping the version."""
    from condor.tree.update import merge_trees

    merged = merge_trees(_load(base), _load(other), name=name)
    _save(merged, output)
    entry = merged.changelog[-1]
    typer.echo(f"merged: {entry.added} nodes added, {len(merged.leaves())} leaves -> {output} (version {merged.version})")


@tree_app.command("sample")
def sample(
    n: Annotated[int, typer.Option("-n", "--count", min=0, help="How many leaves to draw.")],
    tree: TreeOpt = "en",
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same leaves.")] = 0,
    weights: Annotated[Optional[str], typer.Option("--weights", help="Domain weights 'Health=2,Law=0.5' (multiply each leaf's chance).")] = None,
    inverse_to: Annotated[Optional[Path], typer.Option("--inverse-to", help="JSONL dataset: favour leaves it uses least.")] = None,
    lang: Annotated[Optional[str], typer.Option("--lang", help="Only leaves in this language.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list of names per line.")] = False,
) -> None:
    """Draw leaf tags uniformly over leaves, by domain weights, or to fill a dataset's gaps."""
    from condor.tree.model import TreeError, format_path
    from condor.tree.sample import parse_domain_weights, sample_leaves, tag_path_counts

    loaded = _load(tree)
    try:
        domain_weights = parse_domain_weights(weights) if weights else None
        counts = None
        if inverse_to is not None:
            counts, missing = tag_path_counts(inverse_to)
            if missing:
                typer.secho(f"warning: {missing} record(s) in {inverse_to} have no tag_path", err=True, fg=typer.colors.YELLOW)
        drawn = sample_leaves(loaded, n, seed=seed, language=lang, domain_weights=domain_weights, counts=counts)
    except TreeError as exc:
        fail(str(exc))
    for path in drawn:
        typer.echo(json.dumps(list(path), ensure_ascii=False) if as_json else format_path(path))


def register(app: typer.Typer) -> None:
    app.add_typer(tree_app, name="tree")
