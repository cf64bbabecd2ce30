"""The docs hold together: every relative link in README.md, docs/*.md and deploy/README.md
resolves (the file, and the #anchor to one of its headings), and every documented
``byok-keeper [COMMAND ...] [--flag]`` names commands and flags the CLI has.

Citations stay inside the project: a ``docs/<page>.md#<anchor>`` named in any tracked file (a
docstring, a comment) resolves to a heading, and no tracked file names notes that live outside
the repository (the facts the code relies on are in docs/FIDELITY.md, with public sources).

The CLI is read live, by walking ``byok_keeper.runtimes.cli``'s click group, so a command or flag
added
(or renamed) later is checked without touching this module. Commands come from shell code blocks
and from inline code in prose: a span starting ``byok-keeper``, or starting with a top-level
command's name and carrying a flag (``daemon --once``)."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from byok_keeper.runtimes.cli import cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy" / "README.md"]
PROGRAM = "byok-keeper"

_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SHELL = {"", "sh", "bash", "shell", "console", "zsh"}
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}
_PLACEHOLDER = re.compile(r"^(<.*>|\.\.\.|[A-Z][A-Z0-9_]*(\.\.\.)?)$")
# Notes kept outside the repository, which no tracked file may cite. Spelled in pieces so that
# this file does not name them itself.
_OFF_NAMES = ("ALIBABA" + "-FACTS", "DES" + "IGN", "STY" + "LE")
_OFF_TREE = re.compile(
    r"\b(?:" + "|".join(_OFF_NAMES) + r")\.md\b|" + "shared" + "/docs", re.IGNORECASE
)
_DOC_ANCHOR = re.compile(r"\bdocs/([\w-]+\.md)#([\w-]+)")


@dataclass(frozen=True)
class Page:
    """One markdown page split into its prose lines and its fenced code blocks."""

    path: Path
    prose: list[tuple[int, str]]  # (line number, text) outside fences
    blocks: list[tuple[int, str, list[str]]]  # (first line number, info string, lines)


def read_page(path: Path) -> Page:
    prose: list[tuple[int, str]] = []
    blocks: list[tuple[int, str, list[str]]] = []
    fence: str | None = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        opening = _FENCE.match(line.strip())
        if fence is None and opening:
            fence = opening.group(1)
            blocks.append((number + 1, opening.group(2).lower(), []))
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is not None:
            blocks[-1][2].append(line)
        else:
            prose.append((number, line))
    return Page(path, prose, blocks)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation dropped, spaces to
    hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Page) -> set[str]:
    found: set[str] = set()
    for _, line in page.prose:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            name, n = base, 0
            while name in found:  # GitHub numbers repeated headings: x, x-1, x-2
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def links(page: Page) -> list[tuple[int, str]]:
    """Relative links of the page's prose (code spans removed: a link in code is no link)."""
    out = []
    for number, line in page.prose:
        for target in _LINK.findall(_CODE_SPAN.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                out.append((number, target))
    return out


def link_problem(page: Page, target: str) -> str | None:
    """Why a relative link does not resolve, or None."""
    file_part, _, anchor = target.partition("#")
    resolved = (page.path.parent / file_part).resolve() if file_part else page.path
    if not resolved.exists():
        return f"no file {file_part}"
    if anchor:
        if resolved.suffix != ".md":
            return f"#{anchor} on a file that is not markdown"
        if anchor not in anchors(read_page(resolved)):
            return f"no heading #{anchor} in {resolved.name}"
    return None


def _logical_lines(lines: list[str]) -> list[str]:
    joined, current = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
        else:
            joined.append(current + line)
            current = ""
    if current:
        joined.append(current)
    return joined


def _tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text.strip().removeprefix("$ "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in prose: no command to check
        return []


def invocations(page: Page) -> list[tuple[int, list[str]]]:
    """Every documented byok-keeper invocation: (line number, the words after the program)."""
    found: list[tuple[int, list[str]]] = []
    for first, info, lines in page.blocks:
        if info not in _SHELL:
            continue
        for offset, line in enumerate(_logical_lines(lines)):
            segment: list[str] = []
            for token in [*_tokens(line), ";"]:
                if token not in _SEPARATORS:
                    segment.append(token)
                    continue
                words = [w for w in segment if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)]
                if words and Path(words[0]).name == PROGRAM:
                    found.append((first + offset, words[1:]))
                segment = []
    for number, line in page.prose:
        for _, span in _CODE_SPAN.findall(line):
            words = _tokens(span)
            if words and words[0] == PROGRAM:
                found.append((number, words[1:]))
            elif words and words[0] in cli.commands and any(w.startswith("-") for w in words):
                found.append((number, words))
    return found


def _options(command: click.Command) -> dict[str, click.Option]:
    ctx = click.Context(command, info_name=command.name)
    return {
        name: param
        for param in command.get_params(ctx)
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }


def command_problem(words: list[str]) -> str | None:
    """Why ``byok-keeper WORDS`` names a command or flag the CLI lacks, or None."""
    command: click.Command = cli
    path = [PROGRAM]
    skip_value = False
    for raw in words:
        word = raw.strip("[]")
        if skip_value or not word or word in {"|", "..."}:
            skip_value = False
            continue
        if word.startswith("-") and len(word) > 1 and not word[1].isdigit():
            name = word.split("=", 1)[0]
            option = _options(command).get(name)
            if option is None:
                return f"{' '.join(path)} has no option {name}"
            skip_value = not (option.is_flag or option.count) and "=" not in word
        elif isinstance(command, click.Group):
            if _PLACEHOLDER.match(word):
                return None  # "byok-keeper COMMAND ...": nothing concrete left to check
            sub = command.commands.get(word)
            if sub is None:
                return f"{' '.join(path)} has no command {word}"
            command, path = sub, [*path, word]
    return None


def test_every_relative_link_resolves_to_a_file_and_heading():
    problems, seen = [], 0
    for path in PAGES:
        page = read_page(path)
        for number, target in links(page):
            seen += 1
            problem = link_problem(page, target)
            if problem:
                problems.append(f"{path.relative_to(ROOT)}:{number}: ({target}) {problem}")
    assert seen, "the link scanner found no link: is it broken?"
    assert problems == []


def test_every_documented_command_and_flag_exists_in_the_cli():
    problems, seen = [], 0
    for path in PAGES:
        for number, words in invocations(read_page(path)):
            seen += 1
            problem = command_problem(words)
            if problem:
                problems.append(f"{path.relative_to(ROOT)}:{number}: {problem}")
    assert seen > 50, "the command scanner found almost nothing: is it broken?"
    assert problems == []


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        (["plan", "--output", "json"], None),
        (["--config", "byok.toml", "sweep", "--target", "a", "--dry-run"], None),
        (["vault", "list", "--aliases"], None),
        (["daemon", "--once", "--no-such-flag"], "byok-keeper daemon has no option --no-such-flag"),
        (["plan", "--dry-run"], "byok-keeper plan has no option --dry-run"),
        (["vault", "frobnicate"], "byok-keeper vault has no command frobnicate"),
        (["sweep", "--config", "x.toml"], "byok-keeper sweep has no option --config"),
    ],
)
def test_command_check_refuses_what_the_cli_lacks(words, problem):
    assert command_problem(words) == problem


def test_scanners_find_commands_and_links_and_catch_a_missing_anchor(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text(
        "# A page\n\n## Exit codes\n\nSee [codes](#exit-codes), [gone](#nowhere), "
        "[file](other.md) and `daemon --once`.\n\n```sh\n"
        "BYOK_VAULT=file:///v byok-keeper --config b.toml \\\n    plan --bogus  # comment\n"
        "make demo && .venv/bin/byok-keeper status key-1 | jq .\n```\n\n"
        "```python\nbyok-keeper plan --never-checked\n```\n"
    )
    page = read_page(doc)
    assert [target for _, target in links(page)] == ["#exit-codes", "#nowhere", "other.md"]
    assert [link_problem(page, target) for _, target in links(page)] == [
        None,
        "no heading #nowhere in page.md",
        "no file other.md",
    ]
    assert [words for _, words in invocations(page)] == [
        ["--config", "b.toml", "plan", "--bogus"],
        ["status", "key-1"],
        ["daemon", "--once"],
    ]


def test_slug_follows_githubs_rules():
    assert slug("Run unattended: Function Compute") == "run-unattended-function-compute"
    assert slug("`byok-keeper` and [links](x.md)") == "byok-keeper-and-links"
    assert slug("Exit codes (0/1/2/3)") == "exit-codes-0123"


def test_readme_is_a_front_page_linking_every_docs_page():
    readme = read_page(ROOT / "README.md")
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300, "README.md: at most 300 lines"
    linked = {target.partition("#")[0] for _, target in links(readme)}
    unlinked = [
        p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"docs/{p.name}" not in linked
    ]
    assert unlinked == [], "pages README.md does not link (add them to 'Read more')"


def _command_names(command: click.Command, path: tuple[str, ...] = ()) -> list[str]:
    names = [" ".join(path)] if path else []
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            names += _command_names(sub, (*path, name))
    return names


def test_reference_names_every_command_and_global_flag_of_the_live_cli():
    reference = read_page(ROOT / "docs" / "REFERENCE.md")
    spans = [span for _, line in reference.prose for _, span in _CODE_SPAN.findall(line)]
    starts = {" ".join(span.split()[:n]) for span in spans for n in (1, 2)}
    missing = [name for name in _command_names(cli) if name not in starts]
    assert missing == [], "commands docs/REFERENCE.md's table lacks"
    tokens = {token for span in spans for token in re.split(r"[\s/=]+", span)}
    flags = [name for name in _options(cli) if name.startswith("--") and name not in tokens]
    assert flags == [], "global flags docs/REFERENCE.md lacks"


def tracked_files() -> list[Path]:
    """The repository's tracked files (``git ls-files``); outside a git checkout, every file but
    hidden directories and caches."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout.decode()
        files = [ROOT / name for name in out.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        skip = {"__pycache__", "build", "dist"}
        files = [
            p
            for p in ROOT.rglob("*")
            if not any(part.startswith(".") or part in skip for part in p.relative_to(ROOT).parts)
        ]
    return [p for p in files if p.is_file()]


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def test_no_tracked_file_cites_notes_outside_the_repository():
    files = tracked_files()
    assert len(files) > 100, "the file walk found almost nothing: is it broken?"
    found = [
        f"{path.relative_to(ROOT)}:{number}: {match.group(0)}"
        for path in files
        for number, line in enumerate(_text(path).splitlines(), start=1)
        for match in _OFF_TREE.finditer(line)
    ]
    assert found == [], "cite docs/FIDELITY.md (with a public source) instead"


def test_every_docs_anchor_named_in_a_tracked_file_resolves():
    problems, seen = [], 0
    for path in tracked_files():
        for number, line in enumerate(_text(path).splitlines(), start=1):
            for name, anchor in _DOC_ANCHOR.findall(line):
                seen += 1
                page = ROOT / "docs" / name
                if not page.exists():
                    problems.append(f"{path.relative_to(ROOT)}:{number}: no file docs/{name}")
                elif anchor not in anchors(read_page(page)):
                    problems.append(f"{path.relative_to(ROOT)}:{number}: no #{anchor} in {name}")
    assert seen, "the anchor scanner found no docs page anchor: is it broken?"
    assert problems == []


@pytest.mark.parametrize(
    ("line", "cites"),
    [
        ("see " + "ALIBABA" + "-FACTS.md, Quotas", True),
        ("(" + "des" + "ign.md)", True),
        ("the " + "STY" + "LE.md rules", True),
        ("../" + "shared" + "/docs/x", True),
        ("docs/FIDELITY.md#quota-classes", False),
        ("redesign.md and shared/documents", False),
    ],
)
def test_the_off_tree_scanner_knows_the_names(line, cites):
    assert bool(_OFF_TREE.search(line)) is cites
