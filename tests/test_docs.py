"""The documentation holds together: every relative link and image of README.md and docs/**/*.md
names a file that exists and every #anchor a heading there (GitHub's slugs), README stays a short
user's page, each docs page opens with its contents list, and LICENSE and CITATION.cff say how the
project may be used and cited. Needs no Caffe."""
import glob
import os
import re
from collections import Counter

import pytest
import yaml

pytestmark = pytest.mark.fast   # no Caffe: make test-fast

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 250

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target), the target up to a space (an optional "title" may follow).
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def doc_files():
    return [os.path.join(REPO, "README.md")] + sorted(
        glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))


def prose_lines(text):
    """(line number, line) of the text outside fenced code blocks."""
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, line


def links(text):
    """(line number, target) of every Markdown link or image and every <img src>/<a href>, outside
    fenced code blocks and code spans."""
    for number, line in prose_lines(text):
        line = CODE_SPAN.sub("", line)
        for pattern in (MD_LINK, HTML_LINK):
            for match in pattern.finditer(line):
                yield number, match.group(1)


def github_slug(heading):
    """The id GitHub gives a heading: its rendered text lower-cased, punctuation other than '-'
    and '_' dropped, each space a '-'."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"(\*\*|__|\*)(?=\S)(.+?)(?<=\S)\1", r"\2", text)  # emphasis markers, not the words
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text):
    """Every heading's anchor, numbered as GitHub numbers repeats (slug, slug-1, slug-2, ...)."""
    seen = Counter()
    result = set()
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        result.add(slug if seen[slug] == 0 else "%s-%d" % (slug, seen[slug]))
        seen[slug] += 1
    return result


def broken_links(path, root=REPO):
    """'file:line: target: why' for each relative link of the Markdown file ``path`` that does not
    resolve, the files named relative to ``root``."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    problems = []
    for number, target in links(text):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        where = "%s:%d: %s" % (os.path.relpath(path, root), number, target)
        if not os.path.exists(resolved):
            problems.append("%s: no such file %s" % (where, os.path.relpath(resolved, root)))
        elif anchor and resolved.endswith(".md"):
            with open(resolved, encoding="utf-8") as f:
                if anchor not in anchors(f.read()):
                    problems.append("%s: no heading #%s in %s" % (where, anchor, os.path.relpath(resolved, root)))
    return problems


def test_github_slugs_of_the_headings_this_documentation_uses():
    assert github_slug("Caffe's own tests (`make caffe-check`)") == "caffes-own-tests-make-caffe-check"
    assert github_slug("The GPU check (`bench/gpu_check.sh`)") == "the-gpu-check-benchgpu_checksh"
    assert github_slug("`.ci/run`") == "cirun"
    assert github_slug("Beyond the paper: controls, repeats and small data") == \
        "beyond-the-paper-controls-repeats-and-small-data"
    assert github_slug("The loss layer (eqs. 5-6)") == "the-loss-layer-eqs-5-6"
    assert github_slug("What **make test** covers") == "what-make-test-covers"
    assert anchors("# A\n## Notes\n```\n## Not a heading\n```\n## Notes\n") == {"a", "notes", "notes-1"}


def test_broken_links_are_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Real heading\n")
    (tmp_path / "picture.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#real-heading) ![ok](picture.png) [ok](#page)\n"
                    "[gone](missing.md) <img src=\"missing.png\"> [bad anchor](other.md#no-such)\n"
                    "[bad here](#nowhere) [web](https://example.org/x.md) `[code](nowhere.md)`\n"
                    "```\n[fenced](nowhere.md)\n```\n")
    assert broken_links(str(page), root=str(tmp_path)) == [
        "page.md:4: missing.md: no such file missing.md",
        "page.md:4: other.md#no-such: no heading #no-such in other.md",
        "page.md:4: missing.png: no such file missing.png",
        "page.md:5: #nowhere: no heading #nowhere in page.md",
    ]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_links_and_images_resolve(path):
    assert broken_links(path) == []


def test_every_docs_page_is_linked_from_readme_or_another_page():
    targets = set()
    for path in doc_files():
        with open(path, encoding="utf-8") as f:
            for _, target in links(f.read()):
                if not EXTERNAL.match(target) and target.partition("#")[0]:
                    targets.add(os.path.normpath(os.path.join(os.path.dirname(path), target.partition("#")[0])))
    orphans = [os.path.relpath(p, REPO) for p in doc_files()[1:] if p not in targets]
    assert orphans == []


def test_readme_is_a_short_users_page():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) < README_MAX_LINES, "README.md has %d lines: move detail to docs/" % len(lines)
    for section in ("make demo", "make test", "## Citing", "## Licence", "docs/"):
        assert any(section in line for line in lines), section


@pytest.mark.parametrize("path", doc_files()[1:], ids=lambda p: os.path.relpath(p, REPO))
def test_docs_page_opens_with_its_contents(path):
    """A title, then (after an optional paragraph) a list of links to the page's own sections,
    every one of them, before the first."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    assert lines[0].startswith("# "), "%s: the first line is not a title" % path
    first_section = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    contents = [line for line in lines[1:first_section] if re.match(r"\s*(-|\d+\.)\s+\[.+\]\(#", line)]
    assert contents, "%s: no contents list before its first section" % os.path.relpath(path, REPO)
    sections = [github_slug(HEADING.match(line).group(2)) for line in lines if line.startswith("## ")]
    listed = [re.search(r"\]\(#([^)]+)\)", line).group(1) for line in contents]
    missing = [s for s in sections if s not in listed]
    assert missing == [], "%s: sections missing from its contents list" % os.path.relpath(path, REPO)


def test_licence_is_bsd_2_clause():
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("BSD 2-Clause License")
    assert "Copyright (c) 2026, the pycaffe_fer authors" in text
    assert "Redistributions in binary form must reproduce" in text


def test_citation_cff_cites_the_paper():
    with open(os.path.join(REPO, "CITATION.cff"), encoding="utf-8") as f:
        cff = yaml.safe_load(f)
    assert cff["cff-version"] == "1.2.0"
    assert cff["license"] == "BSD-2-Clause"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Facial expression recognition boosted by soft label with a diverse ensemble"
    assert [a["family-names"] for a in paper["authors"]] == ["Gan", "Chen", "Xu"]
    assert (paper["journal"], paper["year"], paper["volume"]) == ("Pattern Recognition Letters", 2019, 125)
    assert (paper["start"], paper["end"]) == (105, 112)
    assert paper["doi"] == "10.1016/j.patrec.2019.04.002"
