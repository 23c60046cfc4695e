"""The docs site builds with `mkdocs build --strict`: a broken link, a link to a missing
heading, or a page left out of the nav (mkdocs.yml, `validation`) fails the build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of the project's mkdocs.yml into `site`."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_docs_site_builds_strictly_with_every_page(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build = mkdocs_build(REPO, site)
    assert build.returncode == 0, build.stderr[-4000:]
    docs = REPO / "docs"
    pages = {p.relative_to(docs).with_suffix("") for p in docs.rglob("*.md")}
    built = {p.relative_to(site).with_suffix("") for p in site.rglob("*.html")}
    assert pages <= built
    reference = (site / "reference" / "configuration.html").read_text()
    assert "FREIGHT_ENGINE__DTYPE" in reference


@pytest.mark.parametrize(
    ("link", "named"),
    [("guides/missing.md", "guides/missing.md"), ("#no-such-heading", "no-such-heading")],
    ids=["missing page", "missing heading"],
)
def test_a_broken_link_fails_the_strict_build(tmp_path: Path, link: str, named: str) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(f"# Home\n\nSee [the guide]({link}).\n")
    settings = (REPO / "mkdocs.yml").read_text().split("\nnav:", 1)[0]
    (tmp_path / "mkdocs.yml").write_text(settings + "\nnav:\n  - Home: index.md\n")
    build = mkdocs_build(tmp_path, tmp_path / "site")
    assert build.returncode != 0 and named in build.stderr


def test_a_page_left_out_of_the_nav_fails_the_strict_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n")
    (docs / "orphan.md").write_text("# Not in the nav\n")
    settings = (REPO / "mkdocs.yml").read_text().split("\nnav:", 1)[0]
    (tmp_path / "mkdocs.yml").write_text(settings + "\nnav:\n  - Home: index.md\n")
    build = mkdocs_build(tmp_path, tmp_path / "site")
    assert build.returncode != 0 and "orphan.md" in build.stderr
