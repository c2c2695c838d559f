"""The code's shape, checked: the import contracts in pyproject.toml (layers, no cycles, training
code free of the web and the database), imports inside functions only where they defer a heavy
optional dependency, and one module that changes a job's status."""
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "workers")
# An import inside a function must say why on its line or the line above: "# deferred: …".
DEFERRED = re.compile(r"#\s*deferred:")


def _sources():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_imports_inside_functions_say_why():
    undeclared = []
    for path in _sources():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    here = lines[sub.lineno - 1] + lines[sub.lineno - 2]
                    if not DEFERRED.search(here):
                        undeclared.append(f"{path.relative_to(ROOT)}:{sub.lineno}: "
                                          f"{ast.unparse(sub)}")
    assert not undeclared, "imports inside functions without '# deferred: <why>':\n" + "\n".join(
        undeclared)


def test_only_the_lifecycle_writes_a_jobs_status():
    writers = set()
    pattern = re.compile(r"update\(Job\)|\bjob\.status\s*=|Job\([^)]*\bstatus=")
    for path in _sources():
        if pattern.search(path.read_text()):
            writers.add(str(path.relative_to(ROOT)))
    assert writers == {"app/jobs/lifecycle.py"}


def test_only_the_export_lifecycle_writes_an_exports_status():
    pattern = re.compile(r"update\(Export\)|\bexport\.status\s*=|Export\([^)]*\bstatus=")
    writers = {str(p.relative_to(ROOT)) for p in _sources() if pattern.search(p.read_text())}
    assert writers == {"app/exports/lifecycle.py"}


def test_only_the_quality_lifecycle_writes_a_quality_reports_status():
    pattern = re.compile(r"update\(QualityReport\)|\breport\.status\s*=|"
                         r"QualityReport\([^)]*\bstatus=")
    writers = {str(p.relative_to(ROOT)) for p in _sources() if pattern.search(p.read_text())}
    assert writers == {"app/datasets/quality.py"}


def test_leased_rows_change_status_only_through_app_leased():
    """Exports and quality reports change status through their lifecycle modules, which use
    app.leased (the one module with a generic `update(self.model)`)."""
    pattern = re.compile(r"update\(self\.model\)|update\(m\)")
    assert {str(p.relative_to(ROOT)) for p in _sources()
            if pattern.search(p.read_text())} == {"app/leased.py"}


def test_the_runner_stays_small():
    assert len((ROOT / "workers" / "runner.py").read_text().splitlines()) < 150
