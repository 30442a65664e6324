"""The documents' links: every relative link of the README and docs/ names a file that exists,
and the results index lists every dated results file, so that a new measurement cannot land
unreachable from the README."""

import re

from conftest import DOCUMENTS, REPO

RESULTS = REPO / "docs" / "results"
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)  # fenced blocks and inline code: not links


def relative_links(document):
    """(target path, as written) of every link in document outside code that is not a web
    address; anchors are not checked."""
    for written in LINK.findall(CODE.sub("", document.read_text())):
        if re.match(r"[a-z]+:", written) or written.startswith("#"):
            continue
        yield (document.parent / written.split("#")[0]).resolve(), written


def test_every_relative_link_names_an_existing_file():
    broken = [f"{document.relative_to(REPO)}: {written}"
              for document in DOCUMENTS for target, written in relative_links(document)
              if not target.exists()]
    assert not broken, broken


def test_the_results_index_lists_every_dated_results_file():
    index = RESULTS / "README.md"
    listed = {target for target, _ in relative_links(index)}
    dated = {path.resolve() for path in RESULTS.glob("20*.md")}
    assert dated, "no dated results files found"
    assert dated - listed == set(), sorted(path.name for path in dated - listed)


def test_the_readme_links_the_results_index():
    assert (RESULTS / "README.md").resolve() in {target for target, _ in relative_links(REPO / "README.md")}
