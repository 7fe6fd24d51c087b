"""What a package index shows and what an installer gets: the license, the typing marker, the
supported Pythons, and a description whose links work away from the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli where tomllib is missing
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [uv, "build", "--quiet", "--out-dir", str(out), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return out


def test_the_wheel_carries_the_license_and_the_typing_marker(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        (license_name,) = (n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        license_text = archive.read(license_name).decode()
    assert "keysentry/py.typed" in names
    assert license_text == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert metadata["License-Expression"] == "MIT"
    assert metadata["License-File"] == "LICENSE"


def test_the_sdist_carries_the_license_and_the_typing_marker(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.partition("/")[2] for name in archive.getnames()}
    assert {"LICENSE", "src/keysentry/py.typed", "examples/README.md"} <= names


def test_the_license_is_the_mit_text_of_the_authors() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the keysentry authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    assert PYPROJECT["project"]["license"] == "MIT"


def test_the_python_classifiers_match_requires_python() -> None:
    project = PYPROJECT["project"]
    floor = re.fullmatch(r">=3\.(\d+)", project["requires-python"])
    assert floor is not None
    minors = sorted(
        int(m.group(1))
        for c in project["classifiers"]
        if (m := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c))
    )
    assert minors, "no Python version classifiers"
    assert minors[0] == int(floor.group(1))
    assert minors == list(range(minors[0], minors[-1] + 1)), "a version is missing between"


def _slug(heading: str) -> str:
    """The anchor a renderer gives a heading (GitHub's rule, which PyPI's README view follows)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _description(dist: Path) -> str:
    wheel = next(dist.glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(name).decode()).get_payload()  # type: ignore[return-value]


def test_the_package_description_links_only_to_the_web_or_its_own_sections(dist: Path) -> None:
    """The README is the description on a package index, where a link to a repository file
    (``examples/README.md``, the chart ``benchmarks/e2e.png``) leads nowhere: such files are
    named as text there, while the repository's README keeps its picture."""
    description = _description(dist)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](benchmarks/e2e.png)" in readme, "the README shows the end-to-end chart"
    assert "`benchmarks/e2e.png`, in the source distribution." in description
    prose = re.sub(r"```.*?```", "", description, flags=re.S)
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", prose, flags=re.M)}
    targets = re.findall(r"\]\(([^)\s]+)", prose)
    assert targets, "the description links nowhere: the pattern is wrong"
    for target in targets:
        if target.startswith("#"):
            assert target[1:] in anchors, f"no section for the link {target}"
        else:
            assert target.startswith("https://"), f"a relative link: {target}"
