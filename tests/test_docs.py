"""The READMEs' references hold: every test they cite as a guarantee's proof exists, and every
repository path they name is there. A renamed test or a moved benchmark folder fails here, not
in a reader's hands."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "benchmarks/README.md")
# Backticked names that look like tests but are fields of the files they describe.
NOT_TESTS = {"test_limited", "test_accuracy_tta_per_seed"}
# Paths that exist only in an installed wheel (pyproject.toml maps exported/ there).
INSTALLED_ONLY = {"fmnist_edge/shipped/"}
TEST_FILE = re.compile(r"(?<![\w/.])(?:tests/)?(test_\w+\.py)")
TEST_NAME = re.compile(r"(?:^|::|\s|,)(test_[a-z0-9_*]+)(?![\w.])")
REPO_PATH = re.compile(r"^(?:\.\./)?((?:benchmarks|tools|tests|fmnist_edge|exported)/[\w./-]*)$")


def _spans(doc: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", (ROOT / doc).read_text())


def _test_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        names |= set(re.findall(r"^\s*def (test_\w+)", path.read_text(), re.M))
    return names


@pytest.mark.parametrize("doc", DOCS)
def test_every_cited_test_file_and_test_exists(doc):
    files = {path.name for path in (ROOT / "tests").glob("test_*.py")}
    names = _test_names()
    missing = []
    for span in _spans(doc):
        missing += [f"file {name}" for name in TEST_FILE.findall(span) if name not in files]
        for name in TEST_NAME.findall(span):
            pattern = re.compile(name.replace("*", r"\w*") + "$")  # `test_full_disk_while_*`
            if name not in NOT_TESTS and not any(pattern.match(n) for n in names):
                missing.append(f"test {name}")
    assert not missing, f"{doc} cites what tests/ does not hold: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_named_repository_path_exists(doc):
    base = (ROOT / doc).parent
    missing = []
    for span in _spans(doc):
        match = REPO_PATH.match(span)
        if match and match.group(1) not in INSTALLED_ONLY:
            path = match.group(1)
            if not ((ROOT / path).exists() or (base / path).exists()):
                missing.append(span)
    assert not missing, f"{doc} names paths that are not in the repository: {missing}"


def test_the_checks_see_what_they_check():
    """Each check finds references to check: a pattern gone wrong would pass on nothing."""
    spans = _spans("README.md")
    assert sum(bool(TEST_NAME.findall(s)) for s in spans) >= 30
    assert sum(bool(REPO_PATH.match(s)) for s in spans) >= 20
